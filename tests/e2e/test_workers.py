"""`regogate serve --workers N` with real processes: one supervisor, workers on one port
(SO_REUSEPORT), the audit on PostgreSQL (one chain all workers append to) and usage on
Redis. Requests from the official openai SDK land on both workers (the x-regogate-worker
header says which answered), the trail verifies offline, a killed worker is restarted while
the other keeps serving, and configurations that would be wrong in several processes are
refused with one line."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from idp.testing import RunningIdp, running_idp
from pep.defaults import embedded_mapping
from tests import logscan
from tests.audit.test_crash import env, free_port, wait_healthy
from tests.conftest import drop_pg_schema, drop_redis_prefix
from tests.e2e.test_replicas import _write_signing_key
from tests.harness import deep_merge

HELLO: list[Any] = [{"role": "user", "content": "Hello"}]
WORKER = "x-regogate-worker"


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[bytes]
    pids: list[int]
    config: dict[str, Any]
    log: Path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _pid_alive(p)], "worker processes outlived the supervisor"


def _banner_pids(stdout: Path, proc: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"\((\d+) workers, pids ([\d ]+)\) is listening", stdout.read_text())
        if m:
            return [int(p) for p in m.group(2).split()]
        assert proc.poll() is None, f"supervisor exited {proc.returncode}"
        time.sleep(0.1)
    raise TimeoutError("no banner")


@pytest.fixture
def shared(postgres_dsn: str, redis_url: str) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:10]
    schema, prefix = f"workers_{tag}", f"regogate-workers:{tag}:"
    yield {"audit": {"store": postgres_dsn, "pg_schema": schema},
           "usage": {"store": redis_url, "key_prefix": prefix, "timeout_s": 5.0},
           "workspace": {"session_store": redis_url, "redis_key_prefix": f"{prefix}ws:"},
           "mcp": {"enabled": False}}
    asyncio.run(drop_pg_schema(postgres_dsn, schema))
    drop_redis_prefix(redis_url, prefix)


def _start(tmp_path: Path, config: dict[str, Any], workers: int = 2) -> Served:
    port = free_port()
    cfg = deep_merge(config, {"server": {"port": port, "data_dir": str(tmp_path / "gw")}})
    path = tmp_path / "workers.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log, out = tmp_path / "workers.log", tmp_path / "workers.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pep", "serve", "--config", str(path), "--workers", str(workers)],
        env=env(), stdout=out.open("wb"), stderr=log.open("wb"))
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, log)
    return Served(url, proc, _banner_pids(out, proc), cfg, log)


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path / "idp") as server:
        yield server


def _config(tmp_path: Path, idp: RunningIdp, shared: dict[str, Any]) -> dict[str, Any]:
    config = deep_merge(embedded_mapping(data_dir=tmp_path, issuer=idp.issuer), shared)
    config["audit"]["signing_key"] = str(tmp_path / "audit-key.pem")
    _write_signing_key(tmp_path / "audit-key.pem")
    return config


async def _which_workers(url: str, token: str, connections: int) -> list[str]:
    """One request per new connection (a fresh SDK client each): the workers that answered."""
    seen: list[str] = []
    for _ in range(connections):
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0) as c:
            raw = await c.chat.completions.with_raw_response.create(model="mock-gpt",
                                                                     messages=HELLO)
            answer = raw.parse()
            assert answer.choices[0].message.content
            seen.append(raw.headers[WORKER])
    return seen


async def _until_both(url: str, token: str, limit: int = 64) -> list[str]:
    seen: list[str] = []
    while len(seen) < limit and set(seen) != {"1", "2"}:
        seen += await _which_workers(url, token, 4)
    return seen


def _verify(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    audit = config["audit"]
    return subprocess.run(
        [sys.executable, "-m", "pep", "audit", "verify", "--store", audit["store"],
         "--pg-schema", audit["pg_schema"], "--public-key", str(tmp_path / "audit-key.pub.pem"),
         "--json"], env=env(), capture_output=True, text=True, timeout=120,
         cwd=tmp_path)


@pytest.mark.redis
@pytest.mark.postgres
async def test_two_workers_share_one_port_survive_a_killed_worker_and_write_one_verifiable_trail(
    tmp_path: Path, idp: RunningIdp, shared: dict[str, Any]
) -> None:
    served = await asyncio.to_thread(_start, tmp_path, _config(tmp_path, idp, shared))
    try:
        assert len(served.pids) == 2 and served.proc.pid not in served.pids
        token = idp.token("alice")
        seen = await _until_both(served.url, token)
        assert set(seen) == {"1", "2"}, f"every connection went to one worker: {seen}"

        # Kill worker 1 outright: the other keeps answering, the supervisor starts a new one.
        os.kill(served.pids[0], signal.SIGKILL)
        # Connections the dying worker had accepted die with it (the nature of a kill); from
        # the moment it is gone every new connection reaches the other worker.
        await asyncio.to_thread(_wait_gone, served.pids[:1])
        after_kill = await _which_workers(served.url, token, 6)
        assert len(after_kill) == 6
        deadline = time.monotonic() + 60
        back: list[str] = []
        while "1" not in back and time.monotonic() < deadline:
            back += await _which_workers(served.url, token, 4)
            await asyncio.sleep(0.2)
        assert "1" in back, "the killed worker was not replaced"
        assert served.proc.poll() is None
    finally:
        served.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(served.proc.wait, 60)
    assert code == 0
    await asyncio.to_thread(_wait_gone, served.pids)
    logscan.assert_clean(served.log.read_text(errors="replace"), "the workers' stderr")
    assert "worker 1 (pid" in served.log.read_text() and "restarting it" in served.log.read_text()

    verify = await asyncio.to_thread(_verify, served.config, tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    query = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "pep", "audit", "query", "--store", served.config["audit"]["store"],
         "--pg-schema", served.config["audit"]["pg_schema"], "--user", "alice"],
        env=env(), capture_output=True, text=True, check=True, cwd=tmp_path)
    events = [yaml.safe_load(line)["event"] for line in query.stdout.splitlines()]
    answered = len(seen) + len(after_kill) + len(back)
    assert events.count("request.completion") == answered, (answered, sorted(set(events)), [events.count(e) for e in sorted(set(events))])
    assert events.count("request.intent") == answered


@pytest.mark.redis
@pytest.mark.postgres
async def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, idp: RunningIdp, shared: dict[str, Any]
) -> None:
    served = await asyncio.to_thread(_start, tmp_path, _config(tmp_path, idp, shared))
    try:
        served.proc.kill()
        await asyncio.to_thread(served.proc.wait, 10)
        await asyncio.to_thread(_wait_gone, served.pids)
    finally:
        for pid in served.pids:
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    # The port is free again: nothing was left listening.
    port = int(served.url.rsplit(":", 1)[1])
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def _serve_fails(tmp_path: Path, config: dict[str, Any] | None, *extra: str,
                 timeout: float = 120) -> tuple[int, str]:
    args = [sys.executable, "-m", "pep", "serve", *extra]
    if config is not None:
        path = tmp_path / "refused.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    done = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=timeout,
                          cwd=tmp_path)
    return done.returncode, done.stderr


def _offline_config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    base = embedded_mapping(data_dir=tmp_path / "gw", issuer="http://127.0.0.1:9")
    # The embedded defaults sign auditors in to the workspace: sessions shared via Redis.
    base = deep_merge(base, {"workspace": {"session_store": "redis://127.0.0.1:9/0"},
                             "mcp": {"enabled": False}})
    return deep_merge(base, {"server": {"port": free_port()}, **extra})


def test_workers_with_a_sqlite_audit_and_memory_counters_are_refused_in_one_line(
    tmp_path: Path,
) -> None:
    code, err = _serve_fails(tmp_path, _offline_config(tmp_path), "--workers", "2")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --workers 2: audit.store must be postgresql://")
    assert "usage.store must be redis://" in lines[0]


def test_workers_with_in_memory_conversations_are_refused(tmp_path: Path) -> None:
    cfg = _offline_config(tmp_path, audit={"store": "postgresql://127.0.0.1:9/x"},
                          usage={"store": "redis://127.0.0.1:9/0"}, responses={"store": "memory"})
    code, err = _serve_fails(tmp_path, cfg, "--workers", "3")
    assert code == 2
    assert err.strip() == ("error: --workers 3: responses.store must not be 'memory' with"
                           " --workers > 1: a response stored by one worker would be unknown to"
                           " the others (use the default or postgresql://)")


def test_workers_with_browser_sign_in_sessions_in_memory_are_refused(tmp_path: Path) -> None:
    cfg = _offline_config(tmp_path, audit={"store": "postgresql://127.0.0.1:9/x"},
                          usage={"store": "redis://127.0.0.1:9/0"},
                          workspace={"client_id": "regogate-workspace",
                                     "session_store": "memory"})
    code, err = _serve_fails(tmp_path, cfg, "--workers", "2")
    assert code == 2
    assert err.strip() == ("error: --workers 2: workspace.session_store must be redis://..."
                           " with --workers > 1: a sign-in started on one worker would be"
                           " unknown to the worker its callback reaches")


def test_workers_with_mcp_servers_are_refused(tmp_path: Path) -> None:
    cfg = _offline_config(tmp_path, audit={"store": "postgresql://127.0.0.1:9/x"},
                          usage={"store": "redis://127.0.0.1:9/0"}, mcp={"enabled": True})
    code, err = _serve_fails(tmp_path, cfg, "--workers", "2")
    assert code == 2
    assert err.strip().startswith("error: --workers 2: mcp must be off (mcp.enabled: false,")


def test_workers_on_the_embedded_defaults_are_refused(tmp_path: Path) -> None:
    code, err = _serve_fails(tmp_path, None, "--workers", "2", "--port", str(free_port()))
    assert code == 2
    assert err.startswith("error: --workers 2 needs --config with audit.store postgresql://")


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_a_worker_count_below_one_is_a_usage_error(tmp_path: Path, value: str) -> None:
    code, err = _serve_fails(tmp_path, None, "--workers", value)
    assert code == 2
    assert f"--workers: must be a whole number of at least 1, not '{value}'" in err


def test_workers_refuse_a_port_someone_else_listens_on(tmp_path: Path) -> None:
    cfg = _offline_config(tmp_path, audit={"store": "postgresql://127.0.0.1:9/x"},
                          usage={"store": "redis://127.0.0.1:9/0"})
    with socket.socket() as other:
        # Even a listener that allows port sharing: a second gateway must not split its traffic.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        cfg["server"]["port"] = other.getsockname()[1]
        code, err = _serve_fails(tmp_path, cfg, "--workers", "2")
    assert code == 2
    assert err.strip() == (f"error: cannot listen on 127.0.0.1:{cfg['server']['port']}:"
                           " Address already in use")


def test_a_worker_that_cannot_start_stops_the_others_and_exits_with_its_reason(
    tmp_path: Path,
) -> None:
    # Nothing listens on port 9: the audit store cannot open, so no worker can start.
    cfg = _offline_config(tmp_path, audit={"store": "postgresql://postgres@127.0.0.1:9/x",
                                           "write_timeout_s": 2.0},
                          usage={"store": "redis://127.0.0.1:9/0"})
    code, err = _serve_fails(tmp_path, cfg, "--workers", "2")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"error: worker [12] cannot start: .*audit.*", last), err
