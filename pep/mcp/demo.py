"""The demo MCP server of the embedded defaults, served at ``/mcp/demo`` through the gateway.

A few harmless tools (``echo``, ``add``, ``word_count``), a resource and a prompt, plus
``admin_report``, which the default policy lets only admins call (policies/mcp). It is an
``mcp`` SDK server (MCPServer, streamable HTTP) that the gateway runs on an ephemeral
loopback port in a thread of its own, and reaches like any other upstream: over HTTP, with
the server's own credentials, never the user's token.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from pep.mcp.http_upstream import HttpUpstream
from pep.mcp.upstream import UpstreamReply, UpstreamUnavailable

log = logging.getLogger("regogate.mcp.demo")


def build_demo_app() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("regogate-demo", instructions="Demo tools behind the regogate gateway.",
                       log_level="WARNING")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Add two numbers.")
    def add(a: float, b: float) -> float:
        return a + b

    @server.tool(description="Count the words of a text.")
    def word_count(text: str) -> int:
        return len(text.split())

    @server.tool(description="Gateway demo statistics (admins only in the default policy).")
    def admin_report() -> str:
        return "demo report: 3 users, 4 tools, 0 incidents"

    @server.resource("demo://readme", name="readme", mime_type="text/plain",
                     description="What this demo server is.")
    def readme() -> str:
        return "The regogate demo MCP server: echo, add, word_count and admin_report."

    @server.prompt(description="Ask for a short summary of a text.")
    def summarize(text: str) -> str:
        return f"Summarize in one sentence: {text}"

    return server.streamable_http_app(streamable_http_path="/mcp")


class LoopbackServer:
    """An ASGI app (by default the demo) under uvicorn on 127.0.0.1:<ephemeral>, in its own
    thread and event loop, so it installs no signal handlers in the gateway's main thread."""

    def __init__(self, app: Any = None, *, path: str = "/mcp") -> None:
        self._app = app
        self._path = path
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.url = ""

    async def start(self) -> None:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = self._app if self._app is not None else build_demo_app()
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="regogate-mcp-demo", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the MCP server did not start")
            await asyncio.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}{self._path}"
        log.info("loopback MCP server on %s", self.url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)


class DemoUpstream:
    """The demo server as an upstream, started on the first message (a gateway that never
    serves /mcp/demo never imports the SDK nor opens the port)."""

    def __init__(self, name: str, session: Callable[[], aiohttp.ClientSession], *,
                 max_bytes: int, connect_timeout_s: float) -> None:
        self.name = name
        self._session = session
        self._max_bytes = max_bytes
        self._connect_timeout_s = connect_timeout_s
        self._server: LoopbackServer | None = None
        self._http: HttpUpstream | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        return None

    async def _upstream(self) -> HttpUpstream:
        async with self._lock:
            if self._http is None:
                server = LoopbackServer()
                try:
                    await server.start()
                except Exception as exc:
                    await server.close()
                    raise UpstreamUnavailable(f"the demo MCP server did not start: {exc}") from exc
                self._server = server
                self._http = HttpUpstream(self.name, server.url, self._session,
                                          max_bytes=self._max_bytes,
                                          connect_timeout_s=self._connect_timeout_s)
            return self._http

    async def send(self, message: dict[str, Any], *, headers: Mapping[str, str],
                   session_id: str | None, timeout_s: float) -> UpstreamReply:
        upstream = await self._upstream()
        return await upstream.send(message, headers=headers, session_id=session_id,
                                   timeout_s=timeout_s)

    async def terminate(self, session_id: str, headers: Mapping[str, str]) -> None:
        if self._http is not None:
            await self._http.terminate(session_id, headers)

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
