"""With the audit disk full, /readyz says so (503) instead of answering 200 while every model
request fails with 503 audit_unavailable. A real ``regogate serve`` whose file-size limit
(RLIMIT_FSIZE) makes the SQLite WAL hit "disk full" after a few requests."""

from __future__ import annotations

import asyncio
import json
import resource
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from idp.testing import idp_subprocess
from pep.defaults import embedded_mapping

from .test_crash import env, free_port, wait_healthy

LIMIT = 400_000  # bytes any one file of the gateway may grow to


def limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def readyz(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def fill(url: str, token: str) -> str:
    from openai import AsyncOpenAI, APIStatusError

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=20)
    try:
        for n in range(2000):
            try:
                await client.chat.completions.create(
                    model="mock-gpt", messages=[{"role": "user", "content": f"fill {n} " + "x" * 2000}])
            except APIStatusError as exc:
                assert exc.status_code == 503, exc
                return str(exc.body)
    finally:
        await client.close()
    raise AssertionError("the audit store never filled up")


def test_readyz_fails_while_the_audit_disk_is_full(tmp_path: Path) -> None:
    idp_dir = tmp_path / "idp"
    with idp_subprocess(idp_dir) as idp:
        token = subprocess.check_output(
            [sys.executable, "-m", "idp", "token", "alice", "--data-dir", str(idp_dir)],
            env=env(), text=True).strip()
        port = free_port()
        mapping = embedded_mapping(data_dir=tmp_path / "gw", issuer=idp.issuer, port=port)
        mapping["policy"]["bundle"] = str(Path(mapping["policy"]["bundle"]).resolve())
        mapping["audit"] = {"store": f"sqlite:///{tmp_path / 'gw' / 'audit.db'}",
                            "write_timeout_s": 2.0}
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(yaml.safe_dump(mapping))
        log = tmp_path / "gateway.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "pep", "serve", "--config", str(cfg)],
                                    env=env(), stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path,
                                    preexec_fn=limit_file_size)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, log)
            status, body = readyz(url)
            assert status == 200, body
            error = asyncio.run(fill(url, token))
            assert "audit_unavailable" in error
            status, body = readyz(url)
            assert status == 503, body
            checks = body["checks"]
            assert isinstance(checks, dict) and checks["audit"]["ok"] is False
            assert "not writable" in str(checks["audit"]["error"])
        finally:
            proc.kill()
            proc.wait(timeout=10)
