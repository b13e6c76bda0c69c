"""No credential in any log line, and one line per malformed request (GUIDE.md 3.10).

A real ``regogate serve`` process at DEBUG log level is sent a broad set of hostile requests
that carry a valid bearer token, a provider-key-shaped string and a body canary. Its whole
stderr is then scanned (tests/logscan.py): no token, key or canary, no traceback, exactly one
line per request the HTTP parser refused, naming its request id and a reason code. Each of
those refusals is also a JSON 400 with ``x-request-id`` and a ``request.rejected`` record.
"""

from __future__ import annotations

import asyncio
import gzip
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from idp.testing import RunningIdp, running_idp
from pep.audit.reader import open_reader
from pep.defaults import embedded_mapping
from tests import logscan
from tests.audit.test_crash import env, free_port, wait_healthy
from tests.e2e.conftest import upstream_config
from tests.e2e.raw import RawResponse, closed_by_peer, connect, read_response
from tests.fakes.server import FakeServer
from tests.harness import deep_merge


class Gateway:
    def __init__(self, url: str, log: Path, data_dir: Path, proc: subprocess.Popen[bytes]):
        self.url, self.log, self.data_dir, self.proc = url, log, data_dir, proc


@pytest.fixture
async def gateway(tmp_path: Path, upstream: FakeServer) -> AsyncIterator[tuple[Gateway, RunningIdp]]:
    async with running_idp(tmp_path / "idp") as idp:
        port = free_port()
        data_dir = tmp_path / "gw"
        config = deep_merge(embedded_mapping(data_dir=data_dir, issuer=idp.issuer, port=port),
                            upstream_config(upstream))
        config["policy"]["bundle"] = str(Path(config["policy"]["bundle"]).resolve())
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(yaml.safe_dump(config))
        log = tmp_path / "gateway.log"
        environ = {**env(), "REGOGATE_LOG_LEVEL": "DEBUG"}
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "pep", "serve", "--config", str(cfg)],
                                    env=environ, stdout=fh, stderr=subprocess.STDOUT,
                                    cwd=tmp_path)
        url = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_healthy, url, proc, log)
            yield Gateway(url, log, data_dir, proc), idp
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 15)


async def send(url: str, data: bytes) -> RawResponse | None:
    """One raw request on its own connection; None if the server closed it without a reply."""
    reader, writer = await connect(url)
    try:
        writer.write(data)
        await writer.drain()
        try:
            return await read_response(reader, timeout=15)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
    finally:
        writer.close()


def hostile_requests(token: str, canary: str) -> dict[str, tuple[bytes, bool]]:
    """name -> (raw request, whether aiohttp's HTTP parser refuses it)."""
    body = orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": canary}]})
    auth = f"Authorization: Bearer {token}"

    def head(*lines: str, sep: str = "\r\n") -> bytes:
        return (sep.join(lines) + sep + sep).encode("latin-1")

    ok_head = ["POST /v1/chat/completions HTTP/1.1", "Host: gw", auth,
               "Content-Type: application/json"]
    bomb = gzip.compress(canary.encode() + b" " * (8 * 1024 * 1024))
    return {
        "bare LF line endings": (head(*ok_head, f"Content-Length: {len(body)}", sep="\n") + body,
                                 True),
        "NUL in the token": (head("POST /v1/chat/completions HTTP/1.1", "Host: gw",
                                  f"Authorization: Bearer {token}\x00{canary}",
                                  "Content-Type: application/json",
                                  f"Content-Length: {len(body)}") + body, True),
        "obsolete line folding": (head(*ok_head, f"X-Note: {canary}", f" {token}",
                                       f"Content-Length: {len(body)}") + body, True),
        "header line beyond the limit": (head(*ok_head, "X-Big: " + token * 60,
                                              f"Content-Length: {len(body)}") + body, True),
        "garbage request line with the token in it": (
            head(f"POST /v1/chat/completions?t={token} HTTP/1.1 {canary}", "Host: gw", auth),
            True),
        "bad method": (head("P\x01ST /v1/chat/completions HTTP/1.1", "Host: gw", auth), True),
        "unknown HTTP version": (head("POST /v1/chat/completions HTTP/9.9", "Host: gw", auth),
                                 True),
        "length and chunked together": (head(*ok_head, f"Content-Length: {len(body)}",
                                             "Transfer-Encoding: chunked") + body, True),
        "space before the colon": (head(*ok_head, f"Authorization : Bearer {token}",
                                        f"Content-Length: {len(body)}") + body, True),
        "broken chunk framing": (head(*ok_head, "Transfer-Encoding: chunked")
                                 + b"zz\r\n" + body + b"\r\n0\r\n\r\n", True),
        "invalid JSON with the canary": (head(*ok_head, f"Content-Length: {len(canary) + 1}")
                                         + b"{" + canary.encode(), False),
        "forbidden key": (_json_request(auth, {"model": "mock-gpt", "api_base": canary,
                                               "messages": [{"role": "user", "content": "x"}]}),
                          False),
        "SSRF model": (_json_request(auth, {"model": f"http://169.254.169.254/{canary}",
                                            "messages": [{"role": "user", "content": "x"}]}),
                       False),
        "corrupt gzip": (head(*ok_head, "Content-Encoding: gzip",
                              f"Content-Length: {len(body)}") + body, False),
        "gzip bomb": (head(*ok_head, "Content-Encoding: gzip", f"Content-Length: {len(bomb)}")
                      + bomb, False),
        "bad signature": (_json_request(f"Authorization: Bearer {token[:-4]}AAAA",
                                        orjson.loads(body)), False),
        "two different credentials": (_json_request(auth, orjson.loads(body),
                                                    f"x-api-key: {token}x"), False),
        "an ordinary request": (_json_request(auth, orjson.loads(body)), False),
    }


def _json_request(auth: str, doc: dict[str, Any], *extra: str) -> bytes:
    body = orjson.dumps(doc)
    lines = ["POST /v1/chat/completions HTTP/1.1", "Host: gw", auth, *extra,
             "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def test_hostile_requests_leave_no_secret_and_no_traceback_in_the_gateway_log(
    gateway: tuple[Gateway, RunningIdp], upstream: FakeServer
) -> None:
    gw, idp = gateway
    token = idp.token("alice")
    canary = "CANARY" + uuid.uuid4().hex
    logscan.register(token, canary, token[:-4] + "AAAA", token + "x")
    refused_by_parser: dict[str, str] = {}
    statuses: dict[str, int | None] = {}
    for name, (data, malformed) in hostile_requests(token, canary).items():
        response = await send(gw.url, data)
        statuses[name] = response.status if response else None
        assert response is not None, f"{name}: closed without a response"
        if malformed:
            assert response.status == 400, (name, response.body[:200])
            error = response.json()["error"]
            assert error["type"] == "invalid_request_error" and error["code"], name
            assert canary.encode() not in response.body and token.encode() not in response.body
            refused_by_parser[response.headers["x-request-id"]] = name
    assert statuses["an ordinary request"] == 200
    # A slow-header client too (closed at the deadline or by the test, either way no log line
    # may carry what it sent).
    reader, writer = await connect(gw.url)
    writer.write(f"POST /v1/chat/completions HTTP/1.1\r\n{'Authorization: Bearer ' + token}"
                 .encode())
    await closed_by_peer(reader, within=0.5)
    writer.close()

    gw.proc.send_signal(signal.SIGTERM)
    await asyncio.to_thread(gw.proc.wait, 15)
    text = gw.log.read_text(errors="replace")
    logscan.assert_clean(text, "the gateway's stderr")
    assert "Traceback" not in text
    malformed_lines = [line for line in text.splitlines() if "malformed HTTP request" in line]
    assert len(malformed_lines) == len(refused_by_parser), malformed_lines
    for rid in refused_by_parser:
        (line,) = [line for line in malformed_lines if rid in line]
        assert "reason=" in line

    reader_ = open_reader(f"sqlite:///{gw.data_dir / 'audit.db'}")
    try:
        records = [r.doc() async for r in reader_.records()]
    finally:
        await reader_.close()
    by_id = {r["request_id"]: r for r in records}
    for rid, name in refused_by_parser.items():
        assert by_id[rid]["event"] == "request.rejected", name
        assert by_id[rid]["extra"]["reason"] == by_id[rid]["outcome"]["error_code"]
    assert token not in orjson.dumps(records).decode()
    # The body canary is never recorded; only the SSRF attempt's model name (evidence, cut to
    # 256 characters) carries it.
    with_canary = [r for r in records if canary in orjson.dumps(r).decode()]
    assert all(canary in r["what"]["model_requested"] for r in with_canary)
    assert len(upstream.requests) == 1  # the ordinary request only


def test_the_log_scanner_finds_a_token_a_provider_key_and_a_registered_canary() -> None:
    logscan.register("canary-123456789")
    assert logscan.hits("Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln")
    assert logscan.hits("calling provider with sk-test-not-a-real-key")
    assert logscan.hits("body was {canary-123456789}")
    assert not logscan.hits("request req_0123 refused: reason=invalid_header peer=127.0.0.1")
