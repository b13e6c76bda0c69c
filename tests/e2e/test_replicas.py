"""The production topology with real processes: two `regogate serve` replicas share one Redis
for usage counters and write one PostgreSQL audit trail. A per-day request limit is enforced
across both (issue 7), and the trail both replicas wrote verifies offline (issue 5)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from idp.testing import running_idp
from pep.defaults import embedded_mapping
from tests.audit.test_crash import env, free_port, wait_healthy
from tests.e2e.test_quotas_e2e import contractors, quota_bundle
from tests import logscan
from tests.conftest import drop_pg_schema, drop_redis_prefix
from tests.harness import deep_merge, error_body

HELLO: list[Any] = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def shared_services(postgres_dsn: str, redis_url: str) -> Iterator[dict[str, Any]]:

    tag = uuid.uuid4().hex[:10]
    schema, prefix = f"replicas_{tag}", f"regogate-replicas:{tag}:"
    yield {"audit": {"store": postgres_dsn, "pg_schema": schema},
           "usage": {"store": redis_url, "key_prefix": prefix, "timeout_s": 5.0}}

    asyncio.run(drop_pg_schema(postgres_dsn, schema))
    drop_redis_prefix(redis_url, prefix)


def start_replica(tmp_path: Path, name: str, config: dict[str, Any]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    cfg = deep_merge(config, {"server": {"port": port, "data_dir": str(tmp_path / name)}})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([sys.executable, "-m", "pep", "serve", "--config", str(path)],
                            env=env(), stdout=subprocess.DEVNULL, stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    return url, proc


@pytest.fixture
async def replicas(tmp_path: Path, shared_services: dict[str, Any]) -> AsyncIterator[tuple[Any, list[str], dict[str, Any]]]:
    async with running_idp(tmp_path / "idp") as idp:
        bundle = quota_bundle(tmp_path, contractors("requests", "day", 3))
        base = embedded_mapping(data_dir=tmp_path, issuer=idp.issuer)
        config = deep_merge(base, {"policy": {"bundle": str(bundle)}, **shared_services})
        # Both replicas must sign checkpoints with the same key (docs/audit.md).
        config["audit"]["signing_key"] = str(tmp_path / "audit-key.pem")
        _write_signing_key(tmp_path / "audit-key.pem")
        started = [await asyncio.to_thread(start_replica, tmp_path, n, config) for n in ("a", "b")]
        try:
            yield idp, [url for url, _ in started], config
        finally:
            for _, proc in started:
                proc.terminate()
            for _, proc in started:
                proc.wait(timeout=15)
            for name in ("a", "b"):  # GUIDE.md 3.10: no token or key in any log line
                logscan.assert_clean((tmp_path / f"{name}.log").read_text(errors="replace"),
                                     f"replica {name}'s stderr")


def _write_signing_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    path.with_suffix(".pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.mark.redis
@pytest.mark.postgres
async def test_two_gateway_processes_share_one_limit_and_write_one_verifiable_trail(
    tmp_path: Path, replicas: tuple[Any, list[str], dict[str, Any]]
) -> None:
    idp, (a, b), config = replicas
    token = idp.token("bob")
    clients = {url: openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0)
               for url in (a, b)}
    try:
        for url in (a, b, a):
            await clients[url].chat.completions.create(model="mock-gpt", messages=HELLO)
        for url in (b, a):
            with pytest.raises(openai.RateLimitError) as info:
                await clients[url].chat.completions.create(model="mock-gpt", messages=HELLO)
            assert error_body(info.value)["code"] == "quota_requests_per_day"
            assert int(info.value.response.headers["Retry-After"]) >= 1
    finally:
        for c in clients.values():
            await c.close()
    audit = config["audit"]
    verify = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pep", "audit", "verify", "--store", audit["store"],
         "--pg-schema", audit["pg_schema"], "--public-key", str(tmp_path / "audit-key.pub.pem"),
         "--json"],
        env=env(), capture_output=True, text=True, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    query = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pep", "audit", "query", "--store", audit["store"],
         "--pg-schema", audit["pg_schema"], "--user", "bob"],
        env=env(), capture_output=True, text=True, check=True, cwd=tmp_path)
    events = [yaml.safe_load(line)["event"] for line in query.stdout.splitlines()]
    assert events.count("request.completion") == 3 and events.count("policy.deny") == 2
