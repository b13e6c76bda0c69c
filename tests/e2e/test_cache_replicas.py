"""Two real `regogate serve` processes share exact-cache entries through Redis (issue 15):
an answer filled by one replica is a hit on the other for the same person only, the hit is
audited by the replica that served it with the filler's request id, and a purge of one user
from the CLI empties the shared store for every replica."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
import yaml

from idp.testing import running_idp
from pep.audit.factory import store_url
from pep.audit.reader import open_reader
from pep.audit.settings import AuditSettings
from pep.defaults import embedded_mapping
from tests.audit.test_crash import env
from tests.e2e.conftest import upstream_config
from tests.e2e.test_replicas import start_replica
from tests.fakes.server import FakeServer
from tests.harness import deep_merge

HELLO: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def cache_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"regogate-cache-replicas:{uuid.uuid4().hex[:10]}:"
    yield prefix
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


async def _ask(url: str, token: str) -> tuple[str, str]:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as c:
        resp = await c.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=HELLO, temperature=0)
    assert resp.parse().choices[0].message.content == "Hello from the fake upstream."
    return resp.headers["x-regogate-cache"], resp.headers["x-request-id"]


async def _trail(data_dir: Path) -> list[dict[str, Any]]:
    reader = open_reader(store_url(AuditSettings(), data_dir))
    try:
        return [r.doc() async for r in reader.records()]
    finally:
        await reader.close()


@pytest.mark.redis
async def test_two_gateway_processes_share_exact_cache_entries_per_user(
    tmp_path: Path, redis_url: str, cache_prefix: str, upstream: FakeServer
) -> None:
    async with running_idp(tmp_path / "idp") as idp:
        base = embedded_mapping(data_dir=tmp_path, issuer=idp.issuer)
        config = deep_merge(deep_merge(base, upstream_config(upstream)), {
            "cache": {"store": redis_url, "redis_key_prefix": cache_prefix, "timeout_s": 5.0}})
        config["audit"].pop("store", None)  # each replica its own SQLite trail, under its data dir
        started = [await asyncio.to_thread(start_replica, tmp_path, n, config) for n in ("a", "b")]
        try:
            (a, _), (b, _) = started
            alice, bob = idp.token("alice"), idp.token("bob")
            filled = await _ask(a, alice)
            shared = await _ask(b, alice)
            other = await _ask(b, bob)
            cli_config = tmp_path / "cli.yaml"
            cli_config.write_text(yaml.safe_dump(config))
            purge = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "pep", "cache", "purge", "--user",
                                 "alice", "--config", str(cli_config)],
                env=env(), capture_output=True, text=True)
            assert purge.returncode == 0, purge.stdout + purge.stderr
            after_purge = await _ask(b, alice)
        finally:
            for _, proc in started:
                proc.terminate()
            for _, proc in started:
                proc.wait(timeout=15)
    assert [filled[0], shared[0], other[0], after_purge[0]] == ["miss", "hit", "miss", "miss"]
    assert yaml.safe_load(purge.stdout) == {"purged": 1}
    assert len(upstream.requests) == 3
    hit = next(e for e in await _trail(tmp_path / "b")
               if e["event"] == "request.completion" and e["request_id"] == shared[1])
    assert hit["who"]["subject"] == "alice"
    assert hit["extra"]["cache"]["hit"] is True and hit["extra"]["cache"]["filled_by"] == filled[1]


PARAPHRASE = "Tell me the capital city of France."


async def _ask_semantic(url: str, token: str, question: str) -> tuple[str, str]:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as c:
        resp = await c.chat.completions.with_raw_response.create(
            model="mock-gpt", temperature=0,
            messages=[{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": question}])
    resp.parse()
    return resp.headers["x-regogate-cache"], resp.headers["x-request-id"]


def _vectors(url: str) -> float:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("regogate_cache_semantic_vectors "):
                return float(line.split()[1])
    raise AssertionError("regogate_cache_semantic_vectors is not on /metrics")


@pytest.mark.redis
async def test_a_semantic_hit_on_one_replica_for_an_entry_filled_through_the_other(
    tmp_path: Path, redis_url: str, cache_prefix: str
) -> None:
    """Vectors live in Redis beside the entries: replica B answers alice's paraphrase from
    the entry A filled, bob's paraphrase stays a miss, and a purge through A's admin API
    empties B's index as well as the shared entries."""
    from tests.e2e.test_cache_e2e import _semantic_upstream, cache_bundle

    async with FakeServer(_semantic_upstream) as up, running_idp(tmp_path / "idp") as idp:
        base = embedded_mapping(data_dir=tmp_path, issuer=idp.issuer)
        config = deep_merge(deep_merge(deep_merge(base, upstream_config(up)), cache_bundle(
            tmp_path, mode="semantic", min_similarity=0.95)), {
            "cache": {"store": redis_url, "redis_key_prefix": cache_prefix, "timeout_s": 5.0,
                      "semantic_embeddings_model": "mock-embed"}})
        config["audit"].pop("store", None)
        started = [await asyncio.to_thread(start_replica, tmp_path, n, config) for n in ("a", "b")]
        try:
            (a, _), (b, _) = started
            alice = idp.token("alice")
            bob = idp.token("bob", claims={"groups": ["ml-team"]})
            filled = await _ask_semantic(a, alice, "What is the capital of France?")
            paraphrase = await _ask_semantic(b, alice, PARAPHRASE)
            other = await _ask_semantic(b, bob, PARAPHRASE)
            vectors_before = await asyncio.to_thread(_vectors, b)
            purge = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "pep", "cache", "purge", "--user",
                                 "alice", "--url", a],
                env={**env(), "REGOGATE_TOKEN": idp.token("carol")}, capture_output=True,
                text=True)
            assert purge.returncode == 0, purge.stdout + purge.stderr
            after_purge = await _ask_semantic(b, alice, PARAPHRASE)
            vectors_after = await asyncio.to_thread(_vectors, b)
        finally:
            for _, proc in started:
                proc.terminate()
            for _, proc in started:
                proc.wait(timeout=15)
    assert [filled[0], paraphrase[0], other[0], after_purge[0]] == ["miss", "hit", "miss", "miss"]
    # B's index: alice's France entry (replayed from A) and bob's; after the purge bob's and
    # alice's refill from B itself
    assert vectors_before == 2 and vectors_after == 2
    assert yaml.safe_load(purge.stdout)["purged"] == 1
    hit = next(e for e in await _trail(tmp_path / "b")
               if e["event"] == "request.completion" and e["request_id"] == paraphrase[1])
    assert hit["extra"]["cache"]["filled_by"] == filled[1]
    assert 0.95 <= hit["extra"]["cache"]["similarity"] < 1.0
    purges = [e for e in await _trail(tmp_path / "a") if e["event"] == "cache.purge"]
    assert [p["who"]["subject"] for p in purges] == ["carol"]
