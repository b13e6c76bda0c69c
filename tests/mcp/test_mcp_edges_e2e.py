"""Bad input and failing upstreams on the MCP routes: the right JSON-RPC error, the right
status, an audit record for each, never a 500; the per-server circuit breaker; sessions
bound to their user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pep import appkeys
from tests.harness import Gateway
from tests.mcp.conftest import mcp_gateway
from tests.mcp.raw import INIT, Raw
from tests.mcp.servers import Upstream


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _records(gw: Gateway, request_id: str) -> list[dict[str, Any]]:
    return [r for r in await gw.audit_records() if r["request_id"] == request_id]


async def test_another_user_presenting_alices_session_gets_404(
        tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        url = f"{gw.url}/mcp/tools"
        alice = Raw(http, url, gw.token("alice"))
        sid = await alice.initialize()
        mallory = Raw(http, url, gw.token("bob"))
        mallory.session_id = sid
        status, doc, resp = await mallory.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        assert status == 404
        assert doc is not None and doc["id"] == 7
        assert doc["error"]["code"] == -32004
        assert doc["error"]["data"]["code"] == "session_not_found"
        # The same answer as for an id that never existed.
        mallory.session_id = "mcps_never-issued"
        status2, doc2, _ = await mallory.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
        assert status2 == 404 and doc2 is not None
        assert doc2["error"]["message"] == doc["error"]["message"]
        # Alice's own session still works.
        status, doc = await alice.call(8, "tools/list")
        assert status == 200 and doc is not None and "result" in doc
        (rejected,) = await _records(gw, resp.headers["x-request-id"])
        assert rejected["event"] == "request.rejected"
        assert rejected["who"]["subject"] == "bob"


async def test_bad_messages_get_json_rpc_errors_and_are_audited(
        tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    async with mcp_gateway(tmp_path, upstream, mcp={"max_message_bytes": 4096}) as gw:
        raw = Raw(http, f"{gw.url}/mcp/tools", gw.token("alice"))
        await raw.initialize()
        seen = len(upstream.headers)
        cases: list[tuple[Any, bytes | None, int, int, str]] = [
            (None, b"{not json", 400, -32700, "invalid_json"),
            ([INIT, INIT], None, 400, -32600, "batch_not_supported"),
            ({"jsonrpc": "1.0", "id": 1, "method": "ping"}, None, 400, -32600,
             "invalid_request"),
            ({"jsonrpc": "2.0", "id": None, "method": "ping"}, None, 400, -32600,
             "invalid_request"),
            ({"jsonrpc": "2.0", "id": 3, "method": "tools/exec"}, None, 200, -32601,
             "method_not_found"),
            ({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"arguments": {}}},
             None, 200, -32602, "invalid_params"),
            ({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
              "params": {"name": "search", "arguments": {"query": "x" * 8000}}}, None, 413,
             -32013, "payload_too_large"),
        ]
        for body, data, status, code, err in cases:
            got, doc, resp = await raw.post(body, raw=data)
            assert (got, doc and doc["error"]["code"], doc and doc["error"]["data"]["code"]) \
                == (status, code, err), (body, doc)
            records = await _records(gw, resp.headers["x-request-id"])
            assert [r["event"] for r in records] == ["request.rejected"], (body, records)
        assert len(upstream.headers) == seen  # none of them was forwarded
        status, doc, _ = await raw.post(INIT, headers={"Content-Type": "text/plain"})
        assert status == 415 and doc is not None and doc["error"]["code"] == -32015
        raw.session_id = None
        status, doc = await raw.call(9, "tools/list")
        assert status == 400 and doc is not None
        assert doc["error"]["data"]["code"] == "missing_session"


async def test_no_token_is_a_401_challenge(tmp_path: Path, upstream: Upstream,
                                           http: aiohttp.ClientSession) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        async with http.post(f"{gw.url}/mcp/tools", json=INIT) as resp:
            doc = await resp.json()
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert doc["error"]["code"] == -32001 and doc["id"] is None
        (rec,) = await _records(gw, resp.headers["x-request-id"])
        assert rec["event"] == "auth.failure"
        async with http.post(f"{gw.url}/mcp/nope", json=INIT,
                             headers={"Authorization": f"Bearer {gw.token('alice')}"}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["data"]["code"] == "mcp_server_not_found"


async def test_a_hanging_upstream_is_a_timeout(tmp_path: Path, upstream: Upstream,
                                               http: aiohttp.ClientSession) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        # The test server's timeout_s is 5 (tests/mcp/conftest.py); the tool sleeps longer.
        raw = Raw(http, f"{gw.url}/mcp/tools", gw.token("alice"))
        await raw.initialize()
        status, doc, resp = await raw.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                            "params": {"name": "slow",
                                                       "arguments": {"seconds": 30}}})
        assert status == 200 and doc is not None
        assert doc["error"]["code"] == -32054
        assert doc["error"]["data"]["status"] == 504
        events = [r["event"] for r in await _records(gw, resp.headers["x-request-id"])]
        assert events == ["request.intent", "upstream.error"]


class Garbage:
    """An "MCP server" that answers every POST with something that is not JSON-RPC."""

    def __init__(self) -> None:
        self.hits = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Garbage:
        async def answer(request: web.Request) -> web.Response:
            self.hits += 1
            await request.read()
            if self.hits == 1:  # a valid initialize, so that a session exists
                return web.json_response(
                    {"jsonrpc": "2.0", "id": 1, "result": {
                        "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                        "serverInfo": {"name": "garbage", "version": "0"}}},
                    headers={"Mcp-Session-Id": "up-1"})
            return web.Response(body=b"<html>502 Bad Gateway</html>", status=200,
                                content_type="application/json")

        app = web.Application()
        app.router.add_post("/mcp", answer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/mcp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_garbage_upstream_opens_the_circuit_breaker(
        tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    async with Garbage() as bad:
        extra = {"servers": {"tools": {"url": bad.url, "breaker_failures": 2,
                                       "breaker_cooldown_s": 60}}}
        async with mcp_gateway(tmp_path, upstream, mcp=extra) as gw:
            raw = Raw(http, f"{gw.url}/mcp/tools", gw.token("alice"))
            status, doc, resp = await raw.post(INIT)
            assert status == 200
            raw.session_id = resp.headers["Mcp-Session-Id"]
            codes = []
            for i in range(3):
                status, doc = await raw.call(10 + i, "tools/list")
                assert status == 200 and doc is not None
                codes.append((doc["error"]["code"], doc["error"]["data"]["code"]))
            assert codes == [(-32050, "mcp_upstream_error"), (-32050, "mcp_upstream_error"),
                             (-32053, "mcp_circuit_open")]
            assert bad.hits == 3  # initialize + two failures; the open breaker sent nothing
            records = await gw.audit_records()
            assert sum(r["event"] == "upstream.error" for r in records) == 3
            ready = await gw.app[appkeys.MCP].ready()
            assert ready[1]["breakers_open"] == ["tools"]


async def test_transport_rules_get_delete_origin_and_version(
        tmp_path: Path, upstream: Upstream, http: aiohttp.ClientSession) -> None:
    cfg = {"allowed_origins": ["https://agent.example"]}
    async with mcp_gateway(tmp_path, upstream, mcp=cfg) as gw:
        url = f"{gw.url}/mcp/tools"
        raw = Raw(http, url, gw.token("alice"))
        sid = await raw.initialize()
        async with http.get(url, headers=raw.headers()) as resp:
            assert resp.status == 405 and resp.headers["Allow"] == "POST, DELETE"
        status, doc, _ = await raw.post({"jsonrpc": "2.0", "id": 2, "method": "ping"},
                                        headers={"MCP-Protocol-Version": "2024-11-05"})
        assert status == 400 and doc is not None
        assert doc["error"]["data"]["code"] == "protocol_version_mismatch"
        status, doc, _ = await raw.post({"jsonrpc": "2.0", "id": 3, "method": "ping"},
                                        headers={"Origin": "https://evil.example"})
        assert status == 403 and doc is not None
        assert doc["error"]["data"]["code"] == "origin_not_allowed"
        status, doc, _ = await raw.post({"jsonrpc": "2.0", "id": 4, "method": "ping"},
                                        headers={"Origin": "https://agent.example"})
        assert status == 200 and doc is not None and doc["result"] == {}
        status, doc, _ = await raw.post(INIT)  # a second initialize on a session
        assert status == 400 and doc is not None
        assert doc["error"]["data"]["code"] == "session_on_initialize"
        # bob cannot end alice's session; alice can, and then it is gone.
        async with http.delete(url, headers={**raw.headers(),
                                             "Authorization": f"Bearer {gw.token('bob')}"}) as r:
            assert r.status == 404
        async with http.delete(url, headers=raw.headers()) as resp:
            assert resp.status == 204
        status, doc = await raw.call(5, "ping")
        assert status == 404 and doc is not None and doc["error"]["code"] == -32004
        records = await gw.audit_records()
    deleted = [r for r in records if (r.get("extra", {}).get("mcp") or {}).get("method")
               == "session/delete" and r["event"] == "request.completion"]
    assert len(deleted) == 1 and deleted[0]["who"]["subject"] == "alice" and sid
