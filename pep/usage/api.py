"""Read-only HTTP view of the counters: ``GET /usage/v1/counters``.

With the in-process store the counters live inside the running gateway, so this is how
``regogate usage`` (and dashboards) read them. The caller is authorised like any other call:
bearer token -> policy with ``request.api = "usage.read"`` and the query in
``request.params`` (so a policy may, for example, let users read only their own row).

Query parameters (all optional): scope=user|team|client, id=<subject>, window=minute|hour|
day|month. Response: {"object": "list", "store": ..., "data": [row, ...]} where a row is
{scope, id, window, start, end, requests, prompt_tokens, completion_tokens, tokens,
cost_usd, estimated_requests} for the current window.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.errors import BadRequest, Unavailable
from pep.principal import Principal
from pep.usage.counters import SCOPES
from pep.usage.tracker import UsageUnavailable
from pep.usage.windows import WINDOWS

Authorize = Callable[..., Awaitable[Principal]]
AUTHORIZE: web.AppKey[Authorize] = web.AppKey("usage_authorize")
_MAX_ID = 256


def _query(request: web.Request) -> dict[str, str | None]:
    q = request.query
    unknown = set(q) - {"scope", "id", "window"}
    if unknown:
        first = min(unknown)
        raise BadRequest(f"unknown query parameter {first!r}", param=first)
    scope, window, ident = q.get("scope"), q.get("window"), q.get("id")
    if scope is not None and scope not in SCOPES:
        raise BadRequest("scope must be user, team or client", param="scope")
    if window is not None and window not in WINDOWS:
        raise BadRequest("window must be minute, hour, day or month", param="window")
    if ident is not None and not 0 < len(ident) <= _MAX_ID:
        raise BadRequest(f"id must be 1 to {_MAX_ID} characters", param="id")
    return {"scope": scope, "window": window, "id": ident}


async def counters_handler(request: web.Request) -> web.Response:
    query = _query(request)
    authorize = request.app.get(AUTHORIZE)
    if authorize is None:
        # Imported here: pep.access pulls in the whole pipeline.
        from pep.access import authorize as pipeline_authorize

        authorize = pipeline_authorize
    await authorize(request, api="usage.read",
                    params={k: v for k, v in query.items() if v is not None})
    tracker = request.app[appkeys.USAGE]
    try:
        rows = await tracker.counters(scope=query["scope"], window=query["window"],
                                      ident=query["id"])
    except UsageUnavailable as exc:
        raise Unavailable("usage counters are unavailable", code="usage_unavailable") from exc
    body: dict[str, Any] = {"object": "list", "store": getattr(tracker, "kind", None),
                            "data": rows}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def setup_usage_routes(app: web.Application, *, authorize: Authorize | None = None) -> None:
    """Add GET /usage/v1/counters. ``authorize`` defaults to ``pep.access.authorize``."""
    if authorize is not None:
        app[AUTHORIZE] = authorize
    app.router.add_get("/usage/v1/counters", counters_handler)
