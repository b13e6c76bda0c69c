"""Cache stores: the LRU is bounded in bytes, entries expire, and a purge of one person's
entries (offboarding, right to erasure) reaches every layer, including a running gateway's
LRU when the purge comes from another process (the CLI)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pep.cache.settings import CacheSettings
from pep.cache.stores import EntryMeta, MemoryStore, Purge, RedisStore, SQLiteStore
from pep.metrics import Metrics

ALICE = EntryMeta(sub="alice", issuer="https://idp", team="research", model="mock-gpt", scope="user")
BOB = EntryMeta(sub="bob", issuer="https://idp", team="sales", model="mock-gpt-eu", scope="team")


async def test_the_memory_lru_is_bounded_in_bytes_and_evicts_the_least_recently_used() -> None:
    metrics = Metrics()
    lru = MemoryStore(max_bytes=250, metrics=metrics)
    for key in ("a", "b"):
        await lru.put(key, b"x" * 100, 60, ALICE)
    assert await lru.get("a") == b"x" * 100  # a is now the most recently used
    await lru.put("c", b"y" * 100, 60, ALICE)
    assert await lru.get("b") is None and await lru.get("a") is not None
    assert lru.bytes == 200 and lru.evictions == 1
    assert metrics.get("cache_evictions_total") == 1 and metrics.get("cache_memory_bytes") == 200
    await lru.put("huge", b"z" * 251, 60, ALICE)
    assert await lru.get("huge") is None


async def test_expired_entries_are_not_served() -> None:
    lru = MemoryStore(max_bytes=1000)
    lru.put_now("k", b"v", time.time() - 1, ALICE)
    assert await lru.get("k") is None and lru.bytes == 0


async def test_sqlite_purge_from_another_process_reaches_the_running_lru(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    gateway = SQLiteStore(path, MemoryStore(10_000), max_entries=100)
    await gateway.start()
    await gateway.put("alice-entry", b"a", 60, ALICE)
    await gateway.put("bob-entry", b"b", 60, BOB)
    assert await gateway.get("alice-entry") == b"a"  # now in the LRU as well
    await gateway.flush()  # the writer thread has put both rows on disk
    cli = SQLiteStore(path, MemoryStore(0), max_entries=100)
    await cli.start()
    assert await cli.purge(Purge(user="alice")) == 1
    stats = await cli.stats()
    await cli.close()
    assert stats["entries"] == 1
    assert await gateway.get("alice-entry") is None
    assert await gateway.get("bob-entry") == b"b"
    await gateway.close()


async def test_sqlite_purges_by_team_and_model_and_everything(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.sqlite3", MemoryStore(10_000), max_entries=100)
    await store.start()
    await store.put("a", b"a", 60, ALICE)
    await store.put("b", b"b", 60, BOB)
    assert await store.purge(Purge(team="sales")) == 1
    assert await store.purge(Purge(model="mock-gpt")) == 1
    await store.put("a", b"a", 60, ALICE)
    assert await store.purge(Purge()) == 0  # no filter purges nothing
    assert await store.purge(Purge(everything=True)) == 1
    assert await store.get("a") is None
    await store.close()


@pytest.fixture
async def redis_store(redis_url: str) -> AsyncIterator[RedisStore]:
    prefix = f"regogate-cache-test:{uuid.uuid4().hex[:10]}:"
    store = RedisStore(CacheSettings(store=redis_url, redis_key_prefix=prefix, timeout_s=5))
    await store.start()
    yield store
    await store.purge(Purge(everything=True))
    await store.close()


async def test_redis_entries_expire_natively_and_purge_by_user_team_or_model(
    redis_store: RedisStore,
) -> None:
    await redis_store.put("a", b"alice's answer", 60, ALICE)
    await redis_store.put("b", b"bob's answer", 60, BOB)
    assert await redis_store.get("a") == b"alice's answer"
    ttl = await redis_store._redis().ttl(redis_store.prefix + "e:a")
    assert 0 < ttl <= 60
    assert (await redis_store.stats())["entries"] == 2
    assert await redis_store.purge(Purge(user="alice")) == 1
    assert await redis_store.get("a") is None and await redis_store.get("b") is not None
    assert await redis_store.purge(Purge(team="research")) == 0
    assert await redis_store.purge(Purge(model="mock-gpt-eu")) == 1
    await redis_store.put("c", b"c", 60, ALICE)
    assert await redis_store.purge(Purge(everything=True)) == 1
    assert (await redis_store.stats())["entries"] == 0
