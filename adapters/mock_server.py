"""An OpenAI-compatible HTTP mock provider: ``python -m adapters.mock_server --port P``.

Same deterministic answers as the embedded ``mock`` provider (adapters.mock), served over
HTTP for benchmarks and manual tests: ``POST /v1/chat/completions`` (plain and SSE),
``POST /v1/embeddings``, ``GET /v1/models``. Responses are rendered once per distinct
request body and then served from a bounded cache, so the server costs next to nothing
per request and the benchmark measures the gateway, not the mock.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import OrderedDict
from typing import Any

import orjson
from aiohttp import web

from adapters import mock

_CACHE_SIZE = 1024
_CACHE: web.AppKey[OrderedDict[tuple[str, bytes], tuple[str, bytes]]] = web.AppKey("cache")


def _render(path: str, raw: bytes) -> tuple[str, bytes]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "error", orjson.dumps({"error": {"message": "body is not JSON",
                                                "type": "invalid_request_error"}})
    if not isinstance(body, dict):
        return "error", orjson.dumps({"error": {"message": "body must be an object",
                                                "type": "invalid_request_error"}})
    if path == "embeddings":
        return "application/json", orjson.dumps(mock.embeddings(body))
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        return "error", orjson.dumps({"error": {"message": "messages is required",
                                                "type": "invalid_request_error"}})
    if body.get("stream"):
        return "text/event-stream", mock.stream_bytes(body)
    return "application/json", orjson.dumps(mock.completion(body))


async def _serve(request: web.Request, path: str) -> web.StreamResponse:
    raw = await request.read()
    cache = request.app[_CACHE]
    key = (path, raw)
    hit = cache.get(key)
    if hit is None:
        hit = _render(path, raw)
        cache[key] = hit
        if len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)
    ctype, data = hit
    if ctype == "error":
        return web.Response(status=400, body=data, content_type="application/json")
    if ctype == "text/event-stream":
        # Chunked, without Content-Length, as real providers stream (and as some gateways
        # expect: Portkey 1.15 on Node 20 fails a stream that arrives with a length).
        stream = web.StreamResponse(headers={"Content-Type": ctype, "Cache-Control": "no-cache"})
        stream.enable_chunked_encoding()
        await stream.prepare(request)
        await stream.write(data)
        await stream.write_eof()
        return stream
    return web.Response(body=data, content_type=ctype)


async def chat(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat")


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "embeddings")


async def models(request: web.Request) -> web.Response:
    data: dict[str, Any] = {"object": "list", "data": [
        {"id": "mock", "object": "model", "created": mock.CREATED, "owned_by": "regogate"}]}
    return web.json_response(data)


def make_app() -> web.Application:
    app = web.Application()
    app[_CACHE] = OrderedDict()
    for prefix in ("/v1", ""):
        app.router.add_post(prefix + "/chat/completions", chat)
        app.router.add_post(prefix + "/embeddings", embeddings)
        app.router.add_get(prefix + "/models", models)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m adapters.mock_server",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - optional speed-up
        loop = asyncio.new_event_loop()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None,
                print=lambda *_: None, loop=loop)


if __name__ == "__main__":
    main()
