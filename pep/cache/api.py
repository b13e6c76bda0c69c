"""The cache's admin HTTP API, for what only the running gateway can reach (its in-memory
LRU and semantic index): ``GET /cache/v1/stats`` and ``POST /cache/v1/purge``.

The caller is authorised like any other call: bearer token -> policy with
``request.api = "cache.admin"`` and ``request.params = {"action": "stats"|"purge", <filters>}``
(the default library allows ``data.gateway.apis["cache.admin"].groups``, admins). A purge is
recorded as a ``cache.purge`` audit record (who, which filters, how many entries) before the
answer is sent; an unrecorded purge is not acknowledged (503, though the entries are gone).
``regogate cache purge --url`` uses this endpoint.

Purge body: {"user": sub, "team": team, "model": model} (filters combine with AND) or
{"all": true}. Answer: {"purged": n, "store": kind}.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.cache.stores import CacheUnavailable, Purge
from pep.errors import BadRequest, Unavailable

_FILTERS = ("user", "team", "model")
_MAX_VALUE = 256


def _purge_of(body: Any) -> Purge:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", param="body")
    unknown = set(body) - {*_FILTERS, "all"}
    if unknown:
        first = min(unknown)
        raise BadRequest(f"unknown field {first!r}", param=first)
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise BadRequest("all must be true or false", param="all")
    values: dict[str, str | None] = {}
    for name in _FILTERS:
        value = body.get(name)
        if value is not None and (not isinstance(value, str)
                                  or not 0 < len(value) <= _MAX_VALUE):
            raise BadRequest(f"{name} must be a string of 1 to {_MAX_VALUE} characters",
                             param=name)
        values[name] = value
    if everything == any(v is not None for v in values.values()):
        raise BadRequest("give user, team and/or model, or all: true (not both)", param="all")
    return Purge(user=values["user"], team=values["team"], model=values["model"],
                 everything=everything)


async def _authorize(request: web.Request, params: dict[str, Any]) -> None:
    from pep.access import authorize  # noqa: PLC0415 - pep.access pulls in the pipeline

    await authorize(request, api="cache.admin", params=params)


def _cache(request: web.Request) -> Any:
    cache = request.app.get(appkeys.CACHE)
    if cache is None:
        raise Unavailable("the response cache is disabled (cache.enabled: false)",
                          code="cache_disabled")
    return cache


async def purge_handler(request: web.Request) -> web.Response:
    from pep.auditing import event  # noqa: PLC0415
    from pep.steps import audit, exchange_for  # noqa: PLC0415
    from pep.validation import read_json  # noqa: PLC0415

    what = _purge_of(await read_json(request, exchange_for(request)))
    params: dict[str, Any] = {"action": "purge", **{
        k: v for k, v in (("user", what.user), ("team", what.team), ("model", what.model))
        if v is not None}}
    if what.everything:
        params["all"] = True
    await _authorize(request, params)
    cache = _cache(request)
    try:
        purged = await cache.purge(what)
    except CacheUnavailable as exc:
        raise Unavailable("the cache store is unavailable", code="cache_unavailable") from exc
    request.app[appkeys.METRICS].inc("cache_purged_total", purged)
    x = exchange_for(request)
    await audit(request, event("cache.purge", x, status=200, extra={
        "filters": {k: v for k, v in params.items() if k != "action"}, "purged": purged,
        "store": cache.store.kind}), required=True)
    return web.Response(body=orjson.dumps({"purged": purged, "store": cache.store.kind}),
                        content_type="application/json", headers={"Cache-Control": "no-store"})


async def stats_handler(request: web.Request) -> web.Response:
    if request.query:
        first = min(request.query)
        raise BadRequest(f"unknown query parameter {first!r}", param=first)
    await _authorize(request, {"action": "stats"})
    cache = _cache(request)
    try:
        stats: dict[str, Any] = await cache.store.stats()
    except CacheUnavailable as exc:
        raise Unavailable("the cache store is unavailable", code="cache_unavailable") from exc
    if cache.semantic is not None and cache.embedder is not None:
        stats["semantic"] = {"embedder": cache.embedder.name, "vectors": len(cache.semantic)}
    return web.Response(body=orjson.dumps(stats), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def setup_cache_routes(app: web.Application) -> None:
    app.router.add_get("/cache/v1/stats", stats_handler)
    app.router.add_post("/cache/v1/purge", purge_handler)
