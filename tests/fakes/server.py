"""A scriptable local HTTP server that stands in for a provider (127.0.0.1, port 0).

Each request is recorded (method, path, query, headers, body) and answered by the next
``Reply`` of the script (or by a function of the request). Replies carry the exact bytes a
provider sends; provider modules in this package build them in each wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    chunks: list[bytes] | None = None  # streamed one write at a time when set
    delay_s: float = 0.0  # before the status line (first-byte timeout tests)
    chunk_delay_s: float = 0.0  # between chunks (idle timeout tests)
    # Held until set: before the status line for a plain reply, after the first chunk for
    # a stream -- keeps a connection busy for exactly as long as a test needs.
    gate: asyncio.Event | None = None


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Script = list[Reply] | Callable[[Recorded], Reply]


class FakeServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[Recorded] = []
        # When set, every request waits here after it is recorded: requests that reached the
        # provider stay in flight until the test lets them go (concurrency tests).
        self.hold: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> FakeServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def _next(self, rec: Recorded) -> Reply:
        if callable(self.script):
            return self.script(rec)
        if not self.script:
            return Reply(500, b'{"error":{"message":"fake server script exhausted"}}')
        return self.script.pop(0)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(request.method, request.raw_path.split("?")[0], dict(request.query),
                       {k.lower(): v for k, v in request.headers.items()},
                       await request.read())
        self.requests.append(rec)
        if self.hold is not None:
            await self.hold.wait()
        reply = self._next(rec)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.chunks is None:
            if reply.gate is not None:
                await reply.gate.wait()
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        resp = web.StreamResponse(status=reply.status, headers=reply.headers)
        await resp.prepare(request)
        for i, chunk in enumerate(reply.chunks):
            if i and reply.chunk_delay_s:
                await asyncio.sleep(reply.chunk_delay_s)
            if i == 1 and reply.gate is not None:
                await reply.gate.wait()
            await resp.write(chunk)
        await resp.write_eof()
        return resp
