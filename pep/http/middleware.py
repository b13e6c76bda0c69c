"""The one place where exceptions become HTTP responses, and where every response gets the
request id. Bugs become a generic 500 (logged with the request id, never leaked)."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from pep import appkeys
from pep.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from pep.steps import exchange_for

log = logging.getLogger("regogate.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DIALECT_FOR_PATH: list[tuple[str, str]] = [("/v1/messages", "anthropic")]


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
    dialects = request.app[appkeys.DIALECTS]
    name = next((d for prefix, d in DIALECT_FOR_PATH if request.path.startswith(prefix)), "openai")
    body: dict[str, Any] = dialects[name].error_body(err)
    return web.Response(
        status=err.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers=err.headers,
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    x = exchange_for(request)
    header = request.app[appkeys.SETTINGS].server.request_id_header
    try:
        response = await handler(request)
    except GatewayError as err:
        response = _render(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _render(request, _from_http_exception(exc))
    except Exception:
        log.exception("unhandled error in request %s", x.request_id)
        request.app[appkeys.METRICS].inc("internal_errors_total")
        response = _render(request, GatewayError("internal error; see gateway logs for "
                                                 f"request {x.request_id}"))
    if not response.prepared:
        response.headers[header] = x.request_id
        # The Anthropic SDK reads its request id from this header (``_request_id``).
        response.headers["request-id"] = x.request_id
    return response
