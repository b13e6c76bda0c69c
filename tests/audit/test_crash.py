"""kill -9 the gateway under concurrent load: every request a client saw succeed (plain, or a
stream that reached ``[DONE]``) has its intent AND its completion in the trail; the restart
closes the requests the kill cut off with ``request.aborted``; the trail verifies. Runs
``regogate serve`` as a real subprocess on SQLite and on PostgreSQL, driven by the official
openai SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from idp.testing import idp_subprocess
from pep.audit.query import AuditQuery
from pep.audit.reader import open_reader
from pep.defaults import embedded_mapping
from tests import logscan
from tests.conftest import drop_pg_schema

REPO = Path(__file__).resolve().parents[2]
SUCCESSES_BEFORE_KILL = 40
WORKERS = 8


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH")) if p)
    e["REGOGATE_LOG_LEVEL"] = "WARNING"
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("gateway did not become healthy")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite":
        yield {"store": f"sqlite:///{tmp_path / 'gw' / 'audit.db'}"}
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"audit_crash_{uuid.uuid4().hex[:10]}"
    yield {"store": dsn, "pg_schema": schema}
    subprocess.run(["psql", dsn, "-qc", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'],
                   check=False, capture_output=True, timeout=60)
    if not _dropped(dsn, schema):  # psql may be absent: drop through asyncpg
        asyncio.run(drop_pg_schema(dsn, schema))


def _dropped(dsn: str, schema: str) -> bool:
    out = subprocess.run(["psql", dsn, "-tAc",
                          f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"],
                         capture_output=True, text=True, check=False)
    return out.returncode == 0 and out.stdout.strip() == "0"


async def drive(url: str, token: str, proc: subprocess.Popen[bytes]) -> list[tuple[str, bool]]:
    """Concurrent plain and streaming calls; kill -9 the gateway mid-load. Returns the
    (request id, streamed) of every call the client saw succeed."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=10)
    succeeded: list[tuple[str, bool]] = []
    killed = asyncio.Event()
    deadline = time.monotonic() + 60

    async def worker(n: int) -> None:
        stream = n % 2 == 1
        while not killed.is_set() and time.monotonic() < deadline:
            try:
                if stream:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="mock-gpt", messages=[{"role": "user", "content": f"hi {n}"}],
                        stream=True)
                    rid = raw.headers["x-request-id"]
                    async for _ in raw.parse():
                        pass
                else:
                    plain = await client.chat.completions.with_raw_response.create(
                        model="mock-gpt", messages=[{"role": "user", "content": f"hi {n}"}])
                    rid = plain.headers["x-request-id"]
                    plain.parse()
            except Exception:
                if killed.is_set():
                    return
                raise
            succeeded.append((rid, stream))
            if len(succeeded) >= SUCCESSES_BEFORE_KILL and not killed.is_set():
                os.kill(proc.pid, signal.SIGKILL)
                killed.set()

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    await client.close()
    assert killed.is_set(), "the load never reached the kill point"
    return succeeded


async def check_trail(store: dict[str, Any], succeeded: list[tuple[str, bool]]) -> None:
    reader = open_reader(store["store"], pg_schema=store.get("pg_schema", "public"))
    try:
        for rid, streamed in succeeded:
            events = {r.index["event"] for r in await reader.query(AuditQuery(request_id=rid))}
            assert "request.intent" in events, f"{rid} succeeded but has no durable intent"
            # A plain answer is sent, and a stream's [DONE] written, only after the completion
            # record is durable.
            kind = "stream" if streamed else "plain"
            assert "request.completion" in events, f"{kind} {rid} has no completion record"
    finally:
        await reader.close()


async def open_requests(store: dict[str, Any]) -> tuple[set[str], int]:
    """Request ids with an intent but no terminal record; number of request.aborted records."""
    reader = open_reader(store["store"], pg_schema=store.get("pg_schema", "public"))
    try:
        intents: set[str] = set()
        closed: set[str] = set()
        aborted = 0
        async for rec in reader.records():
            if rec.index["event"] == "request.intent":
                intents.add(rec.index["request_id"])
            else:
                closed.add(rec.index["request_id"])
                aborted += rec.index["event"] == "request.aborted"
        return intents - closed, aborted
    finally:
        await reader.close()


def serve(cfg: Path, log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "pep", "serve", "--config", str(cfg)],
                                env=env(), stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)


def test_kill_9_under_load_loses_no_acknowledged_request(tmp_path: Path, store: dict[str, Any]) -> None:
    idp_dir = tmp_path / "idp"
    with idp_subprocess(idp_dir) as idp:
        token = subprocess.check_output(
            [sys.executable, "-m", "idp", "token", "alice", "--data-dir", str(idp_dir)],
            env=env(), text=True).strip()
        port = free_port()
        mapping = embedded_mapping(data_dir=tmp_path / "gw", issuer=idp.issuer, port=port)
        mapping["policy"]["bundle"] = str(Path(mapping["policy"]["bundle"]).resolve())
        mapping["audit"] = {**store, "checkpoint_every_records": 16,
                            "checkpoint_dir": str(tmp_path / "cp")}
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(yaml.safe_dump(mapping))
        log = tmp_path / "gateway.log"
        proc = serve(cfg, log, tmp_path)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log)
            succeeded = asyncio.run(drive(url, token, proc))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        asyncio.run(check_trail(store, succeeded))
        still_open, _ = asyncio.run(open_requests(store))

        # Restart: the store closes what the kill cut off before serving, then a clean stop.
        proc = serve(cfg, log, tmp_path)
        try:
            wait_healthy(url, proc, log)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    left, aborted = asyncio.run(open_requests(store))
    assert left == set(), f"{len(left)} intent(s) still open after the restart"
    assert aborted == len(still_open)
    logscan.assert_clean(log.read_text(errors="replace"), "the gateway's output")  # GUIDE 3.10

    out = subprocess.run([sys.executable, "-m", "pep", "audit", "verify", "--config", str(cfg),
                          "--checkpoints", str(tmp_path / "cp"), "--json"],
                         check=False, env=env(), capture_output=True, text=True, cwd=tmp_path)
    report = json.loads(out.stdout)
    assert out.returncode == 0, report
    assert report["valid"] and report["records"] >= 2 * SUCCESSES_BEFORE_KILL
    assert any("unclean shutdown" in w for w in report["warnings"]), report["warnings"]
    assert report["unsealed_records"] == 0  # the restart's start checkpoint sealed the tail
