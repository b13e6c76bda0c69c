"""HTTP endpoints: OpenAI- and Anthropic-compatible APIs, health, readiness, metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.access import allowed_models
from pep.errors import NotFound
from pep.metrics import CONTENT_TYPE, Sample
from pep.pipeline import forward
from pep.steps import authenticate, exchange_for


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await forward(request, request.app[appkeys.DIALECTS]["openai"], "chat.completions")


async def messages(request: web.Request) -> web.StreamResponse:
    return await forward(request, request.app[appkeys.DIALECTS]["anthropic"], "messages")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await forward(request, request.app[appkeys.DIALECTS]["openai"], "embeddings")


# Configured models have no release date; the Anthropic shape requires one (RFC 3339).
_EPOCH = "1970-01-01T00:00:00Z"


def _model_obj(name: str, anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "model", "id": name, "display_name": name, "created_at": _EPOCH}
    return {"id": name, "object": "model", "created": 0, "owned_by": "regogate"}


def _anthropic(request: web.Request) -> bool:
    """The Anthropic SDK sends ``anthropic-version`` on every call: answer in its shape."""
    return "anthropic-version" in request.headers


async def list_models(request: web.Request) -> web.Response:
    x = exchange_for(request)
    principal = await authenticate(request, x)
    names = await allowed_models(request, principal, x)
    if _anthropic(request):
        data = [_model_obj(n, True) for n in names]
        return _json({"data": data, "has_more": False,
                      "first_id": names[0] if names else None,
                      "last_id": names[-1] if names else None})
    return _json({"object": "list", "data": [_model_obj(n, False) for n in names]})


async def get_model(request: web.Request) -> web.Response:
    x = exchange_for(request)
    principal = await authenticate(request, x)
    name = request.match_info["model"]
    if name not in await allowed_models(request, principal, x):
        raise NotFound(f"The model '{name}' does not exist", code="model_not_found")
    return _json(_model_obj(name, _anthropic(request)))


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, Any] = {}
    ok = True
    keys: list[tuple[str, Any]] = [("identity", appkeys.AUTHENTICATOR), ("policy", appkeys.POLICY),
                                   ("audit", appkeys.AUDIT), ("usage", appkeys.USAGE)]
    if appkeys.MCP in app:  # ready while it can serve; open breakers are detail, not failure
        keys.append(("mcp", appkeys.MCP))
    for name, key in keys:
        component = app[key]
        try:
            result: Any = component.ready()
            if asyncio.iscoroutine(result):
                result = await asyncio.wait_for(result, timeout=2.0)
            c_ok, detail = result
        except Exception as exc:  # noqa: BLE001 - a failing probe is "not ready", not a 500
            c_ok, detail = False, {"error": type(exc).__name__}
        checks[name] = {"ok": bool(c_ok), **detail}
        ok = ok and bool(c_ok)
    return _json({"status": "ready" if ok else "not_ready", "checks": checks},
                 status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[appkeys.METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def metric_sources(app: web.Application) -> Iterator[Sample]:
    """Component-owned series, read at scrape time rather than mirrored on every event."""
    engine = app.get(appkeys.POLICY)
    if engine is not None:
        for attr, name in (("reloads", "policy_reloads_total"),
                           ("reload_errors", "policy_reload_errors_total"),
                           ("engine_failures", "policy_engine_failures_total")):
            if hasattr(engine, attr):
                yield name, {}, float(getattr(engine, attr))
        yield "policy_revision_info", {"engine": engine.name, "revision": engine.revision}, 1.0
    for key in (appkeys.AUTHENTICATOR, appkeys.ROUTER):
        samples = getattr(app.get(key), "metric_samples", None)
        if samples is not None:
            yield from samples()
    stats = getattr(app.get(appkeys.AUDIT), "stats", None)
    for field in ("transactions", "records", "failures"):
        if stats is not None and hasattr(stats, field):
            yield f"audit_{field}_total", {}, float(getattr(stats, field))


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


def setup_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/chat/completions", chat_completions)
    r.add_post("/v1/messages", messages)
    r.add_post("/v1/embeddings", embeddings)
    r.add_get("/v1/models", list_models)
    r.add_get("/v1/models/{model}", get_model)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/metrics", metrics)
    app[appkeys.METRICS].add_source(lambda: metric_sources(app))
