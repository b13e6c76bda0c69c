"""The one place where exceptions become HTTP responses, and where every response gets the
request id. Bugs become a generic 500 (logged with the request id, never leaked). A refusal
that has no terminal audit record yet gets one here (``request.rejected`` / ``request.error``)."""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import ClientConnectionResetError, web

from pep import appkeys
from pep.audit.events import EventType
from pep.auditing import rejection_event
from pep.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
)
from pep.exchange import Exchange
from pep.http.edge import EdgeRequestHandler
from pep.logs import access
from pep.steps import audit, exchange_for
from pep.tracing import end_request

log = logging.getLogger("regogate.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DIALECT_FOR_PATH: list[tuple[str, str]] = [("/v1/messages", "anthropic")]
_CLOSE_AFTER = frozenset({"malformed_body", "too_many_chunks"})


def _from_http_exception(exc: web.HTTPException) -> GatewayError:
    if exc.status == 404:
        return NotFound("no such endpoint", code="unknown_endpoint")
    if exc.status == 405:
        return MethodNotAllowed("method not allowed on this endpoint")
    if exc.status == 413:
        return PayloadTooLarge("request body too large")
    err = GatewayError(exc.reason or "error", code=f"http_{exc.status}")
    err.status = exc.status  # type: ignore[misc]
    return err


def _render(request: web.Request, err: GatewayError) -> web.Response:
    if request.path.startswith("/mcp/") or request.path == "/mcp":
        return _render_jsonrpc(request, err)
    dialects = request.app[appkeys.DIALECTS]
    name = next((d for prefix, d in DIALECT_FOR_PATH if request.path.startswith(prefix)), "openai")
    body: dict[str, Any] = dialects[name].error_body(err)
    return web.Response(
        status=err.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=err.headers,
    )


def _render_jsonrpc(request: web.Request, err: GatewayError) -> web.Response:
    """MCP routes answer in JSON-RPC: an error object with the request's id when the message
    was parsed (HTTP 200 for refusals of a well-formed request), else id null (pep.mcp)."""
    from pep.mcp import jsonrpc
    from pep.mcp.proxy import RPC_ID

    rpc_id: Any = request.get(RPC_ID)
    body = jsonrpc.error_message(rpc_id, err, exchange_for(request).request_id)
    return web.Response(status=jsonrpc.http_status(err, rpc_id), body=orjson.dumps(body),
                        content_type="application/json", headers=err.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    x = exchange_for(request)
    header = request.app[appkeys.SETTINGS].server.request_id_header
    tracing = request.app.get(appkeys.TRACING)
    if tracing is not None:
        tracing.start_request(x, request.headers, _route_name(request))
    err: GatewayError | None = None
    try:
        response = await handler(request)
    except GatewayError as exc:
        err = exc
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        err = _from_http_exception(exc)
    except (ConnectionResetError, ClientConnectionResetError):
        # The client went away mid-answer (a CSV export closed early): its choice, not a bug.
        request.app[appkeys.METRICS].inc("client_disconnects_total")
        _access(request, x, 499)
        raise
    except Exception:
        log.exception("unhandled error in request %s", x.request_id)
        request.app[appkeys.METRICS].inc("internal_errors_total")
        err = GatewayError(f"internal error; see gateway logs for request {x.request_id}")
    if err is not None:
        if 400 <= err.status < 500:
            request.app[appkeys.METRICS].inc("client_errors_total", code=err.code)
        response = _render(request, err)
        await _record_refusal(request, x, err)
    if not response.prepared:
        response.headers[header] = x.request_id
        # The Anthropic SDK reads its request id from this header (``_request_id``).
        response.headers["request-id"] = x.request_id
    if err is not None and _body_left_unread(request, err):
        # Answer, then drop the connection: waiting out (or lingering on, i.e. still parsing)
        # the rest of a refused, slow, broken or many-chunk body is what its sender wants.
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        protocol = request.protocol
        if isinstance(protocol, EdgeRequestHandler):
            protocol.discard_then_close()
        elif protocol is not None:
            protocol.force_close()
    _access(request, x, x.outcome_status or response.status)
    return response


def _access(request: web.Request, x: Exchange, status: int) -> None:
    app = request.app
    end_request(x, status)
    p, d = x.principal, x.decision
    decision = None if d is None else ("allow" if d.allow else "deny")
    elapsed = time.perf_counter() - x.started
    # Only configured names become label values: a client's made-up model name must not
    # create a series per typo.
    asked = x.req.model if x.req is not None else None
    model = x.model_served or (asked if asked in app[appkeys.CATALOG].names_set else "none")
    app[appkeys.METRICS].observe_request(
        api=x.api or _route_api(request), model=model,
        decision=decision or "none", status=status, seconds=elapsed)
    access({
        "request_id": x.request_id, "trace_id": x.trace_id, "method": x.method,
        "path": x.path, "status": status, "subject": p.sub if p is not None else None,
        "issuer": p.issuer if p is not None else None, "api": x.api,
        "model": x.req.model if x.req is not None else None, "decision": decision,
        "reasons": [r.code for r in d.reasons] if d is not None and not d.allow else None,
        "latency_ms": round(elapsed * 1000, 3),
        "policy_ms": None if x.policy_s is None else round(x.policy_s * 1000, 3),
        "upstream_ms": None if x.upstream_s is None else round(x.upstream_s * 1000, 3),
    })


def _route_name(request: web.Request) -> str:
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _route_api(request: web.Request) -> str:
    """Requests that never reached a model API (401 before parsing, /v1/models, audit API):
    the route's resource name, bounded by the routes that exist (never the raw path)."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


def _body_left_unread(request: web.Request, err: GatewayError) -> bool:
    if isinstance(err, RequestTimeout) or err.code in _CLOSE_AFTER:
        return True
    return request.body_exists and not request.content.is_eof()


async def _record_refusal(request: web.Request, x: Exchange, err: GatewayError) -> None:
    """Exactly one terminal record per request (GUIDE.md 3.11): a refusal the pipeline did not
    already record (bad body, unknown model or endpoint, size, internal error) is recorded
    here. Best effort, like every refusal record."""
    if x.terminal_recorded or err.code == "audit_unavailable":
        return  # recorded already, or the audit store is what failed
    kind: EventType = "request.rejected" if err.status < 500 else "request.error"
    request.app[appkeys.METRICS].inc("requests_rejected_total", code=err.code)
    await audit(request, rejection_event(kind, x, err), required=False)
