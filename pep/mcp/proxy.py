"""The MCP proxy at ``/mcp/{server}`` (streamable HTTP, MCP revision 2025-11-25):

    authenticate -> bounded body -> one JSON-RPC message (no batches) -> session (owner-bound;
    another user's id is a 404) -> content inspection of the arguments -> tool-call counters
    -> PolicyInput (request.api "mcp", request.mcp) -> decide (deny: JSON-RPC error + audit)
    -> obligations (redact arguments; quota reserved atomically) -> circuit breaker
    -> durable request.intent -> upstream (its own credentials, never the user's token)
    -> list results filtered per item / output decision on call results (withhold, redact,
    size cap) -> request.completion -> JSON (or SSE when notifications came along)

Every exit writes exactly one terminal audit record, like a model call (pep.pipeline).
Refusals are JSON-RPC error objects (pep.mcp.jsonrpc), rendered by the error middleware.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

import orjson
from aiohttp import web

from pep import appkeys
from pep.auditing import content_mode, event, sha256_json
from pep.errors import (
    BadRequest,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PolicyDenied,
    Unavailable,
    UnsupportedMedia,
)
from pep.errors import UpstreamError as Upstream502
from pep.errors import UpstreamTimeout as Upstream504
from pep.exchange import Exchange
from pep.http.body import BodySizes, read_body
from pep.mcp import jsonrpc
from pep.mcp.admission import admit_call, reserve_call, snapshot
from pep.mcp.jsonrpc import Message
from pep.mcp.resource import MCP_RESOURCE, authenticate_mcp
from pep.mcp.results import CHECKED, LISTS, rewrite, strings
from pep.mcp.service import McpGateway
from pep.mcp.sessions import McpSession
from pep.mcp.upstream import UpstreamReply, UpstreamTimeout, UpstreamUnavailable
from pep.output import evaluate_output, output_denial
from pep.policy.contract import Decision
from pep.principal import Principal
from pep.request import NormalizedRequest
from pep.steps import POLICY_INPUT, audit, authenticate, decide, exchange_for
from pep.usage.tracker import UsageUnavailable

RPC_ID: web.RequestKey[object] = web.RequestKey("mcp_rpc_id", object)
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"

# Client-to-server requests of MCP 2025-11-25; anything else is -32601 and never forwarded.
REQUESTS = frozenset({
    "initialize", "ping", "tools/list", "tools/call", "resources/list",
    "resources/templates/list", "resources/read", "resources/subscribe",
    "resources/unsubscribe", "prompts/list", "prompts/get", "completion/complete",
    "logging/setLevel", "tasks/get", "tasks/result", "tasks/list", "tasks/cancel",
})
NOTIFICATIONS = frozenset({
    "notifications/initialized", "notifications/cancelled", "notifications/progress",
    "notifications/roots/list_changed",
})


def _gateway(request: web.Request) -> McpGateway:
    return request.app[appkeys.MCP]


async def _authenticate(request: web.Request, x: Exchange) -> Principal:
    """With ``mcp.resource`` set, only tokens for the gateway's MCP resource (RFC 8707), and
    401s that point MCP clients at the Protected Resource Metadata (RFC 9728); without it,
    the same verification as model calls."""
    if MCP_RESOURCE in request.app:
        return await authenticate_mcp(request)
    return await authenticate(request, x)


def _subject_token(request: web.Request) -> str:
    """The user's token as presented (verified already): what credentials must never carry
    and what a token exchange trades in."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key", "").strip()


async def _credentials(request: web.Request, x: Exchange, gw: McpGateway, server: str,
                       principal: Principal) -> dict[str, str]:
    """The upstream's credential headers (pep/mcp/credentials.py); a failure refuses the
    call (503), audited, nothing forwarded."""
    try:
        return await gw.credentials[server].headers(server, principal, _subject_token(request))
    except GatewayError as err:
        request.app[appkeys.METRICS].inc("mcp_upstream_errors_total", server=server,
                                         code=err.code)
        await release_usage_mcp(request, x, gw)
        await audit(request, event("request.error", x, error=err), required=False)
        raise


def _start(request: web.Request) -> tuple[Exchange, str]:
    x = exchange_for(request)
    x.api = "mcp"
    server = request.match_info["server"]
    x.req = NormalizedRequest(api="mcp", inbound_format="openai", model="", stream=False,
                              body={})
    if _gateway(request).server(server) is None:
        raise NotFound("no such MCP server", code="mcp_server_not_found")
    x.mcp = {"server": server}
    return x, server


async def handle_get(request: web.Request) -> web.StreamResponse:
    """No server-initiated stream: MCP lets a server answer the GET with 405."""
    x, _ = _start(request)
    await _authenticate(request, x)
    raise MethodNotAllowed("this gateway opens no server-initiated stream (GET); POST "
                           "messages", headers={"Allow": "POST, DELETE"})


async def handle_delete(request: web.Request) -> web.StreamResponse:
    x, server = _start(request)
    principal = await _authenticate(request, x)
    gw = _gateway(request)
    session = _session(request, gw, principal, server)
    x.mcp = {"server": server, "method": "session/delete"}
    gw.sessions.drop(session.id)
    terminate = getattr(gw.upstreams[server], "terminate", None)
    if terminate is not None and session.upstream_id is not None:
        try:
            creds = await gw.credentials[server].headers(server, principal,
                                                         _subject_token(request))
        except GatewayError:
            creds = None  # the upstream session then just expires there
        if creds is not None:
            await terminate(session.upstream_id, _upstream_headers(creds, session))
    await audit(request, event("request.completion", x, status=204), required=False)
    return web.Response(status=204)


async def handle_post(request: web.Request) -> web.StreamResponse:
    x, server = _start(request)
    principal = await _authenticate(request, x)
    gw = _gateway(request)
    _check_origin(request, gw)
    raw = await _read(request, x, gw)
    msg = jsonrpc.parse(raw)
    request[RPC_ID] = msg.id
    x.mcp = _describe(server, msg, len(raw))
    _check_method(msg)
    session = None if msg.method == "initialize" else _session(request, gw, principal, server)
    if msg.method == "initialize" and SESSION_HEADER.lower() in {k.lower() for k in request.headers}:
        raise BadRequest("initialize opens a new session: send it without Mcp-Session-Id",
                         code="session_on_initialize")
    if session is not None:
        _check_version(request, session)
    return await _forward(request, x, gw, principal, server, session, msg)


async def _forward(request: web.Request, x: Exchange, gw: McpGateway, principal: Principal,
                   server: str, session: McpSession | None, msg: Message) -> web.StreamResponse:
    app = request.app
    tool = x.mcp.get("tool") if x.mcp else None
    extra = (("tool", f"{server}/{tool}"), ("user_tool", f"{principal.sub} {server}/{tool}")) \
        if msg.method == "tools/call" else ()
    usage = await snapshot(request, gw, principal, extra) if extra else {}
    decision, forwarded = await admit_call(request, x, principal, server, msg, usage)
    if msg.method == "tools/call":
        await reserve_call(request, x, gw, decision, principal, extra)
    breaker = gw.breakers[server]
    err: GatewayError
    if not breaker.allow():
        await release_usage_mcp(request, x, gw)
        err = Unavailable(f"MCP server {server!r} is failing; its circuit breaker is open",
                          code="mcp_circuit_open", retry_after=5)
        app[appkeys.METRICS].inc("mcp_upstream_errors_total", server=server, code=err.code)
        await audit(request, event("upstream.error", x, error=err), required=False)
        raise err
    creds = await _credentials(request, x, gw, server, principal)
    x.prompt_audit = forwarded.get("params")
    try:
        await audit(request, event("request.intent", x), required=True)
    except GatewayError:
        await release_usage_mcp(request, x, gw)
        raise
    reply = await _send(request, x, gw, server, session, forwarded, creds)
    if msg.kind != "request":
        await audit(request, event("request.completion", x, status=202), required=False)
        return web.Response(status=202)
    response = _response_for(reply, msg, server)
    if response is None:  # the upstream answered something that is not an answer
        breaker.failure()
        await release_usage_mcp(request, x, gw)
        err = Upstream502(f"MCP server {server!r} did not answer the request",
                          code="mcp_upstream_garbage")
        return await _upstream_failed(request, x, err)
    breaker.success()
    headers: dict[str, str] = {}
    found = reply_match(reply, msg)
    # Notifications that came with the answer reach an SSE client only, checked with it.
    notes = [m for m in reply.messages if m is not found] if _accepts_sse(request) else []
    if "result" in response:
        result = response["result"]
        if not isinstance(result, dict):
            await release_usage_mcp(request, x, gw)
            err = Upstream502(f"MCP server {server!r} sent a result that is not an object",
                              code="mcp_upstream_garbage")
            return await _upstream_failed(request, x, err)
        if msg.method == "initialize":
            version = result.get("protocolVersion")
            new = gw.sessions.create(principal, server, reply.session_id,
                                     version if isinstance(version, str) else None)
            headers[SESSION_HEADER] = new.id
        elif msg.method in LISTS:
            result = await _filter(request, x, principal, server, msg.method, result)
        if msg.method in CHECKED:
            await _check_size(request, x, decision, result)
        result, notes = await _check_output(request, x, msg, result, notes)
        response = {**response, "result": result}
        x.mcp = {**(x.mcp or {}), "result_status":
                 "tool_error" if result.get("isError") is True else "ok"}
    else:
        # The upstream's own error: its text reaches the client (and the model) too.
        error, notes = await _check_output(request, x, msg, response["error"], notes)
        response = {**response, "error": error}
        code = error.get("code") if isinstance(error, dict) else None
        x.mcp = {**(x.mcp or {}), "result_status": "error",
                 "error_code": code if isinstance(code, int) else None}
    body = orjson.dumps(response)
    x.mcp = {**(x.mcp or {}), "response_bytes": len(body)}
    audited = response.get("result") if content_mode(x) != "none" else None
    await audit(request, event("request.completion", x, status=200, response_content=audited),
                required=False)
    app[appkeys.METRICS].inc("mcp_messages_total", server=server,
                             method=_metric_method(msg.method), outcome=x.mcp["result_status"])
    if notes:
        return _sse([*notes, response], headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def reply_match(reply: UpstreamReply, msg: Message) -> dict[str, Any] | None:
    for m in reply.messages:
        if m.get("id") == msg.id and ("result" in m or "error" in m):
            return m
    return None


def _response_for(reply: UpstreamReply, msg: Message, server: str) -> dict[str, Any] | None:
    found = reply_match(reply, msg)
    if found is None:
        return None
    return {"jsonrpc": "2.0", "id": msg.id,
            **({"result": found["result"]} if "result" in found else {"error": found["error"]})}


async def _send(request: web.Request, x: Exchange, gw: McpGateway, server: str,
                session: McpSession | None, forwarded: dict[str, Any],
                creds: dict[str, str]) -> UpstreamReply:
    srv = gw.settings.servers[server]
    breaker = gw.breakers[server]
    t0 = time.perf_counter()
    err: GatewayError
    try:
        reply = await gw.upstreams[server].send(
            forwarded, headers=_upstream_headers(creds, session),
            session_id=session.upstream_id if session is not None else None,
            timeout_s=srv.timeout_s)
    except UpstreamTimeout as exc:
        breaker.failure()
        err = Upstream504(str(exc), code="mcp_upstream_timeout")
    except UpstreamUnavailable as exc:
        breaker.failure()
        err = Upstream502(str(exc), code="mcp_upstream_error")
    else:
        x.upstream_s = time.perf_counter() - t0
        x.mcp = {**(x.mcp or {}), "upstream_status": reply.status,
                 "upstream_ms": round(x.upstream_s * 1000, 3)}
        if reply.status == 404 and session is not None:
            # The upstream forgot the session: so does the gateway; the client starts over.
            breaker.success()
            gw.sessions.drop(session.id)
            err = NotFound("the MCP session ended upstream; initialize a new one",
                           code="session_not_found")
        elif reply.status >= 500:
            breaker.failure()
            err = Upstream502(f"MCP server {server!r} failed (HTTP {reply.status})",
                              code="mcp_upstream_error")
        elif reply.status >= 400 and reply_match(reply, _as_msg(forwarded)) is None:
            breaker.success()
            err = Upstream502(f"MCP server {server!r} refused the message "
                              f"(HTTP {reply.status})", code="mcp_upstream_refused")
        else:
            return reply
    x.upstream_s = time.perf_counter() - t0
    await release_usage_mcp(request, x, gw)
    await _upstream_failed(request, x, err)


def _as_msg(doc: dict[str, Any]) -> Message:
    return Message(doc, "request" if "id" in doc else "notification", doc.get("method"),
                   doc.get("id"))


async def _upstream_failed(request: web.Request, x: Exchange, err: GatewayError) -> NoReturn:
    server = (x.mcp or {}).get("server", "")
    request.app[appkeys.METRICS].inc("mcp_upstream_errors_total", server=server, code=err.code)
    await audit(request, event("upstream.error", x, error=err), required=False)
    raise err


def _upstream_headers(creds: dict[str, str], session: McpSession | None) -> dict[str, str]:
    """The upstream's own credentials and the negotiated protocol version; nothing of the
    client's request (its Authorization least of all)."""
    headers = dict(creds)
    if session is not None and session.protocol_version:
        headers[VERSION_HEADER] = session.protocol_version
    return headers


async def _filter(request: web.Request, x: Exchange, principal: Principal, server: str,
                  method: str, result: dict[str, Any]) -> dict[str, Any]:
    """One evaluation per listed item, the item named in request.mcp: only what the policy
    allows this user is listed. A policy failure fails the whole listing closed (503)."""
    key, field, item_key = LISTS[method]
    items = result.get(key)
    if not isinstance(items, list):
        return result
    enforced = x.decision
    base: dict[str, Any] = request[POLICY_INPUT]
    kept: list[Any] = []
    for item in items:
        name = item.get(item_key) if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue  # nothing to decide on: not listed
        mcp = {**base["request"]["mcp"], field: name}
        policy_input = {**base, "request": {**base["request"], "mcp": mcp}}
        decision = await decide(request, x, policy_input)
        if decision.allow:
            kept.append(item)
    x.decision = enforced
    x.mcp = {**(x.mcp or {}), "listed": len(kept), "hidden": len(items) - len(kept)}
    return {**result, key: kept}


async def _check_size(request: web.Request, x: Exchange, decision: Decision,
                      result: dict[str, Any]) -> None:
    """The ``max_result_bytes`` obligation on what a tool, resource or prompt returned."""
    cap = decision.obligations.max_result_bytes
    if cap is not None and len(orjson.dumps(result)) > cap:
        err = PolicyDenied(f"the result exceeds {cap} bytes, the most this policy allows",
                           code="result_too_large",
                           details={"reasons": ["result_too_large"], "phase": "output",
                                    "decision_id": decision.decision_id})
        await _withheld(request, x, err)


async def _check_output(request: web.Request, x: Exchange, msg: Message, value: Any,
                        notes: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    """The output decision on everything of the upstream's that reaches the client: the
    result (tool content, resource text, prompt messages, listed tools' descriptions) or
    its error, and the notifications that came with it. A deny withholds the answer; a
    redact obligation masks what was found. ``initialize`` and ``ping`` carry no content."""
    inspector = request.app[appkeys.CONTENT]
    if inspector is None or not _gateway(request).settings.output_decision \
            or msg.method in ("initialize", "ping"):
        return value, notes
    docs = [value, *notes]
    text = "\n".join(inspector.normalise(t) for t in strings(docs, []))
    findings = inspector.inspect([text])
    out = await evaluate_output(request, x, text, findings, final=True)
    if not out.allow:
        await _withheld(request, x, output_denial(request, out))
    wanted = set(out.obligations.redact or ()) & {f.type for f in findings}
    if not wanted:
        return value, notes
    count = 0

    def mask(s: str) -> str:
        nonlocal count
        new, n = inspector.redact(s, wanted)
        count += n
        return new

    redacted: list[Any] = rewrite(docs, mask)
    x.mcp = {**(x.mcp or {}), "result_redacted": count}
    return redacted[0], redacted[1:]


async def _withheld(request: web.Request, x: Exchange, err: GatewayError) -> NoReturn:
    x.mcp = {**(x.mcp or {}), "result_status": "withheld"}
    await release_usage_mcp(request, x, _gateway(request), keep=True)
    await audit(request, event("policy.deny", x, error=err, extra={"phase": "output"}),
                required=False)
    raise err


async def release_usage_mcp(request: web.Request, x: Exchange, gw: McpGateway, *,
                            keep: bool = False) -> None:
    """A tool call that never ran gives its count back; one that ran (its result withheld)
    keeps it."""
    r = x.reservation
    if keep or r is None or not r.open:
        return
    try:
        await gw.usage.release(r)
    except UsageUnavailable:
        # The count stays until its window ends: over-counting, never under.
        request.app[appkeys.METRICS].inc("usage_store_failures_total")


def _describe(server: str, msg: Message, size: int) -> dict[str, Any]:
    """extra.mcp of the audit records: what was asked, never the argument values (their
    digest; the content itself only as the audit_content obligation says)."""
    p = msg.params
    doc: dict[str, Any] = {"server": server, "method": msg.method or "response",
                           "kind": msg.kind, "request_bytes": size}
    if msg.method in ("tools/call", "prompts/get"):
        name = p.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f'{msg.method} needs params.name (a string)', code="invalid_params")
        doc["tool" if msg.method == "tools/call" else "prompt"] = name[:256]
        args = p.get("arguments", {})
        if not isinstance(args, dict):
            raise BadRequest("params.arguments must be an object", code="invalid_params")
        doc["arguments_sha256"] = sha256_json(args)
    elif msg.method in ("resources/read", "resources/subscribe", "resources/unsubscribe"):
        uri = p.get("uri")
        if not isinstance(uri, str) or not uri:
            raise BadRequest(f"{msg.method} needs params.uri (a string)", code="invalid_params")
        doc["resource_uri"] = uri[:2048]
    return doc


def _check_method(msg: Message) -> None:
    if msg.kind == "request" and msg.method not in REQUESTS:
        raise BadRequest(f"method {msg.method!r} is not an MCP method this gateway relays",
                         code="method_not_found")
    if msg.kind == "notification" and msg.method not in NOTIFICATIONS:
        raise BadRequest(f"notification {msg.method!r} is not one this gateway relays",
                         code="method_not_found")


def _session(request: web.Request, gw: McpGateway, principal: Principal,
             server: str) -> McpSession:
    sid = request.headers.get(SESSION_HEADER)
    if not sid:
        raise BadRequest("Mcp-Session-Id is required: initialize a session first",
                         code="missing_session")
    session = gw.sessions.get(sid, principal, server)
    if session is None:
        # The same answer for an id that never existed and for another user's session.
        raise NotFound("unknown or expired MCP session", code="session_not_found")
    return session


def _check_version(request: web.Request, session: McpSession) -> None:
    sent = request.headers.get(VERSION_HEADER)
    if sent is not None and session.protocol_version is not None \
            and sent != session.protocol_version:
        raise BadRequest(f"MCP-Protocol-Version {sent[:32]!r} is not the version this session "
                         "negotiated", code="protocol_version_mismatch")


def _check_origin(request: web.Request, gw: McpGateway) -> None:
    """DNS-rebinding defence (MCP transports, security warning): a browser's Origin must be
    one the operator allowed; requests without Origin (non-browser clients) pass."""
    origin = request.headers.get("Origin")
    if origin is not None and origin not in gw.settings.allowed_origins:
        raise PolicyDenied("this Origin may not use the MCP endpoint", code="origin_not_allowed")


async def _read(request: web.Request, x: Exchange, gw: McpGateway) -> bytes:
    x.body = BodySizes(declared=request.content_length)
    if request.content_type != "application/json":
        raise UnsupportedMedia("Content-Type must be application/json")
    accept = request.headers.get("Accept", "*/*")
    if not any(t in accept for t in ("application/json", "text/event-stream", "*/*")):
        err = GatewayError("Accept must allow application/json or text/event-stream",
                           code="not_acceptable")
        err.status = 406  # type: ignore[misc]
        raise err
    limits = request.app[appkeys.SETTINGS].server.limits
    raw = await read_body(request, x.body, max_bytes=gw.settings.max_message_bytes,
                          timeout_s=limits.body_read_timeout_s)
    if not raw:
        raise jsonrpc.RpcError("the body is empty; one JSON-RPC message is required",
                               jsonrpc.INVALID_REQUEST)
    return raw


def _accepts_sse(request: web.Request) -> bool:
    return "text/event-stream" in request.headers.get("Accept", "")


def _sse(messages: list[dict[str, Any]], headers: dict[str, str]) -> web.Response:
    body = b"".join(b"event: message\ndata: " + orjson.dumps(m) + b"\n\n" for m in messages)
    return web.Response(body=body, headers={**headers, "Content-Type": "text/event-stream",
                                            "Cache-Control": "no-cache"})


_METRIC_METHODS = REQUESTS | NOTIFICATIONS


def _metric_method(method: str | None) -> str:
    return method if method in _METRIC_METHODS else "other"


def setup_mcp_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/mcp/{server}", handle_post)
    r.add_get("/mcp/{server}", handle_get)
    r.add_delete("/mcp/{server}", handle_delete)
