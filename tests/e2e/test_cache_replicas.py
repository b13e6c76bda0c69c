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
