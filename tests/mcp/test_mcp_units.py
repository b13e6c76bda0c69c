"""The MCP proxy's parts on their own: JSON-RPC parsing and error mapping, user-bound
sessions, the streamable-HTTP upstream against real local servers speaking the transport
(JSON, SSE, garbage, oversized, slow), and what is checked in results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from pep.errors import BadRequest, GatewayError, NotFound, PolicyDenied, UpstreamTimeout
from pep.mcp import jsonrpc
from pep.mcp.http_upstream import HttpUpstream
from pep.mcp.results import rewrite, strings
from pep.mcp.sessions import SessionStore
from pep.mcp.upstream import UpstreamTimeout as UpTimeout
from pep.mcp.upstream import UpstreamUnavailable
from pep.principal import Principal

# --- JSON-RPC ------------------------------------------------------------------------------


def _raw(doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_requests_notifications_and_responses_are_told_apart() -> None:
    req = jsonrpc.parse(_raw({"jsonrpc": "2.0", "id": "a", "method": "ping"}))
    note = jsonrpc.parse(_raw({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    resp = jsonrpc.parse(_raw({"jsonrpc": "2.0", "id": 3, "result": {}}))
    assert (req.kind, req.id, req.method, req.params) == ("request", "a", "ping", {})
    assert (note.kind, note.id) == ("notification", None)
    assert (resp.kind, resp.method) == ("response", None)
    with_params = jsonrpc.parse(_raw({"jsonrpc": "2.0", "id": 1, "method": "tools/list",
                                      "params": {"cursor": "c"}}))
    assert with_params.params == {"cursor": "c"}


@pytest.mark.parametrize("doc", [
    {"jsonrpc": "2.0", "id": True, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": "2.0", "id": 2**60, "method": "ping"},
    {"jsonrpc": "2.0", "id": "", "method": "ping"},
    {"jsonrpc": "2.0", "id": "x" * 300, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": ""},
    {"jsonrpc": "2.0", "id": 1, "method": "m" * 200},
    {"jsonrpc": "2.0", "id": 1, "method": 7},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "result": {}},
    {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}},
    {"jsonrpc": "2.0", "id": 1},
    {"jsonrpc": "2.0", "result": {}},
    {"id": 1, "method": "ping"},
    "ping",
])
def test_malformed_messages_are_invalid_requests(doc: Any) -> None:
    with pytest.raises(jsonrpc.RpcError) as info:
        jsonrpc.parse(_raw(doc))
    assert info.value.rpc_code == jsonrpc.INVALID_REQUEST and info.value.status == 400


def test_not_json_is_a_parse_error_and_a_batch_is_refused() -> None:
    with pytest.raises(jsonrpc.RpcError) as info:
        jsonrpc.parse(b'{"jsonrpc": "2.0",')
    assert (info.value.rpc_code, info.value.code) == (jsonrpc.PARSE_ERROR, "invalid_json")
    with pytest.raises(jsonrpc.RpcError) as batch:
        jsonrpc.parse(b"[]")
    assert batch.value.code == "batch_not_supported"


def test_gateway_errors_map_to_json_rpc_codes_and_http_statuses() -> None:
    denied = PolicyDenied("no", code="tool_not_allowed",
                          details={"reasons": ["tool_not_allowed"], "decision_id": "req_1"})
    body = jsonrpc.error_message(5, denied, "req_1")
    assert body == {"jsonrpc": "2.0", "id": 5, "error": {
        "code": -32003, "message": "no",
        "data": {"status": 403, "code": "tool_not_allowed", "request_id": "req_1",
                 "reasons": ["tool_not_allowed"], "decision_id": "req_1"}}}
    assert jsonrpc.http_status(denied, 5) == 200
    assert jsonrpc.http_status(denied, None) == 403
    assert jsonrpc.http_status(NotFound("gone", code="session_not_found"), 5) == 404
    missing = BadRequest("no session", code="missing_session")
    assert jsonrpc.http_status(missing, 5) == 400
    assert jsonrpc.rpc_code(BadRequest("x", code="method_not_found")) == jsonrpc.METHOD_NOT_FOUND
    assert jsonrpc.rpc_code(BadRequest("x", code="invalid_params")) == jsonrpc.INVALID_PARAMS
    assert jsonrpc.rpc_code(BadRequest("x")) == jsonrpc.INVALID_REQUEST
    assert jsonrpc.rpc_code(UpstreamTimeout("slow")) == -32054
    assert jsonrpc.rpc_code(GatewayError("bug")) == jsonrpc.INTERNAL_ERROR


# --- sessions ------------------------------------------------------------------------------

ALICE = Principal(sub="alice", issuer="https://idp")
BOB = Principal(sub="bob", issuer="https://idp")
ALICE_ELSEWHERE = Principal(sub="alice", issuer="https://other-idp")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_is_found_only_by_its_owner_on_its_server() -> None:
    store = SessionStore(idle_s=60, max_per_user=4, clock=Clock())
    s = store.create(ALICE, "tools", "up-1", "2025-11-25")
    assert s.id.startswith("mcps_") and len(s.id) > 40
    assert store.get(s.id, ALICE, "tools") is s
    assert store.get(s.id, BOB, "tools") is None
    assert store.get(s.id, ALICE_ELSEWHERE, "tools") is None  # same sub, other issuer
    assert store.get(s.id, ALICE, "demo") is None
    assert store.get("mcps_unknown", ALICE, "tools") is None
    store.drop(s.id)
    assert store.get(s.id, ALICE, "tools") is None and len(store) == 0


def test_idle_sessions_expire_and_each_user_holds_a_bounded_number() -> None:
    clock = Clock()
    store = SessionStore(idle_s=60, max_per_user=2, clock=clock)
    a1 = store.create(ALICE, "tools", None, None)
    clock.now += 10
    a2 = store.create(ALICE, "tools", None, None)
    b1 = store.create(BOB, "tools", None, None)
    clock.now += 10
    assert store.get(a1.id, ALICE, "tools") is a1  # a1 is now the most recently used
    a3 = store.create(ALICE, "tools", None, None)  # evicts alice's least recent: a2
    assert store.get(a2.id, ALICE, "tools") is None
    assert store.get(a1.id, ALICE, "tools") is a1 and store.get(a3.id, ALICE, "tools") is a3
    assert store.get(b1.id, BOB, "tools") is b1  # bob's are not alice's to evict
    clock.now += 61
    assert store.get(a1.id, ALICE, "tools") is None and len(store) == 0


# --- the streamable-HTTP upstream ------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/mcp", handler)
    # A handler still sleeping when the gateway side hangs up is cancelled, not waited for.
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/mcp"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


MSG = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}


async def _send(http: aiohttp.ClientSession, handler: Handler, *, max_bytes: int = 1 << 20,
                timeout_s: float = 5, message: dict[str, Any] | None = None) -> Any:
    runner, url = await _serve(handler)
    try:
        up = HttpUpstream("t", url, lambda: http, max_bytes=max_bytes, connect_timeout_s=2)
        await up.start()
        try:
            return await up.send(message or MSG, headers={"X-Cred": "c"}, session_id="s-1",
                                 timeout_s=timeout_s)
        finally:
            await up.close()
    finally:
        await runner.cleanup()


async def test_a_json_answer_and_the_headers_sent(http: aiohttp.ClientSession) -> None:
    seen: dict[str, str] = {}

    async def h(request: web.Request) -> web.StreamResponse:
        seen.update(request.headers)
        return web.json_response({"jsonrpc": "2.0", "id": 7, "result": {"tools": []}},
                                 headers={"Mcp-Session-Id": "s-1"})

    reply = await _send(http, h)
    assert reply.status == 200 and reply.session_id == "s-1"
    assert reply.messages == [{"jsonrpc": "2.0", "id": 7, "result": {"tools": []}}]
    assert seen["Mcp-Session-Id"] == "s-1" and seen["X-Cred"] == "c"
    assert "application/json" in seen["Accept"] and "text/event-stream" in seen["Accept"]


async def test_an_event_stream_with_notifications_ends_at_the_answer(
        http: aiohttp.ClientSession) -> None:
    async def h(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        note = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}
        await resp.write(b": comment\nevent: message\nid: 1\ndata: " + orjson.dumps(note)
                         + b"\n\n")
        answer = orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": {"ok": True}})
        await resp.write(b"data: " + answer[:10] + b"\ndata: " + answer[10:] + b"\r\n\r\n")
        await asyncio.sleep(30)  # the stream stays open: the answer is what ends it for us
        return resp

    reply = await _send(http, h)
    assert [m.get("method") for m in reply.messages] == ["notifications/progress", None]
    assert reply.messages[1]["result"] == {"ok": True}


async def test_an_event_stream_that_ends_without_an_answer_is_unavailable(
        http: aiohttp.ClientSession) -> None:
    async def h(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: " + orjson.dumps({"jsonrpc": "2.0", "method": "n"}) + b"\n\n")
        await resp.write_eof()
        return resp

    with pytest.raises(UpstreamUnavailable, match="without answering"):
        await _send(http, h)


@pytest.mark.parametrize("body", [b"not json", b'{"id": 7, "result": {}}', b"[1, 2]", b""])
async def test_garbage_is_unavailable(http: aiohttp.ClientSession, body: bytes) -> None:
    async def h(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    with pytest.raises(UpstreamUnavailable):
        await _send(http, h)


async def test_garbage_in_an_event_stream_is_unavailable(http: aiohttp.ClientSession) -> None:
    async def h(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b"data: {broken\n\n")
        return resp

    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        await _send(http, h)


async def test_oversized_answers_are_unavailable(http: aiohttp.ClientSession) -> None:
    big = orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": {"x": "y" * 5000}})

    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(body=big, content_type="application/json")

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b": padding padding padding padding padding padding\n" * 20)
        return resp

    with pytest.raises(UpstreamUnavailable, match="more than 1000 bytes"):
        await _send(http, plain, max_bytes=1000)
    with pytest.raises(UpstreamUnavailable, match="more than 1000 bytes"):
        await _send(http, events, max_bytes=1000)


async def test_accepted_notifications_and_http_errors(http: aiohttp.ClientSession) -> None:
    async def accepted(request: web.Request) -> web.StreamResponse:
        return web.Response(status=202)

    async def refused(request: web.Request) -> web.StreamResponse:
        return web.json_response({"jsonrpc": "2.0", "id": None,
                                  "error": {"code": -32600, "message": "Session not found"}},
                                 status=404)

    async def failed(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503, text="down")

    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    reply = await _send(http, accepted, message=note)
    assert (reply.status, reply.messages) == (202, [])
    reply = await _send(http, refused)
    assert reply.status == 404 and reply.messages[0]["error"]["code"] == -32600
    reply = await _send(http, failed)
    assert (reply.status, reply.messages) == (503, [])


async def test_a_slow_upstream_times_out_and_a_closed_port_is_unavailable(
        http: aiohttp.ClientSession) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(30)
        return web.Response()

    with pytest.raises(UpTimeout):
        await _send(http, slow, timeout_s=0.2)
    runner, url = await _serve(slow)
    await runner.cleanup()  # nothing listens there any more
    up = HttpUpstream("t", url, lambda: http, max_bytes=1000, connect_timeout_s=2)
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        await up.send(MSG, headers={}, session_id=None, timeout_s=2)
    await up.terminate("s-1", {})  # best effort: no error either


async def test_redirects_are_not_followed(http: aiohttp.ClientSession) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("http://127.0.0.1:9/elsewhere")

    reply = await _send(http, redirect)
    assert reply.status == 307 and reply.messages == []


# --- results -------------------------------------------------------------------------------


def test_every_string_of_a_result_is_checked_but_media() -> None:
    result = {"content": [{"type": "text", "text": "a"},
                          {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
                          {"type": "resource", "resource": {"uri": "u://x", "text": "b",
                                                            "blob": "YmxvYg=="}}],
              "structuredContent": {"type": "c", "data": ["d"]}}
    assert strings(result, []) == ["text", "a", "image", "image/png", "resource", "u://x", "b",
                                   "c", "d"]
    upper = rewrite(result, str.upper)
    assert upper["content"][1]["data"] == "aGVsbG8="
    assert upper["content"][2]["resource"]["blob"] == "YmxvYg=="
    assert upper["content"][2]["resource"]["text"] == "B"
    assert upper["structuredContent"] == {"type": "C", "data": ["D"]}
