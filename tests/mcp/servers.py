"""Upstream MCP servers for the tests, built with the official ``mcp`` SDK (MCPServer,
streamable HTTP) and served by uvicorn on 127.0.0.1. Each records the HTTP headers of every
request it receives, so a test can assert on the upstream's side that the user's token never
arrived; a tool records the arguments it was called with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.mcpserver import Context

from pep.mcp.demo import LoopbackServer

# A well-known example AWS key id (AWS documentation): the api_key detector finds it.
FAKE_SECRET = "AKIAIOSFODNN7EXAMPLE"


@dataclass
class Upstream:
    url: str
    headers: list[dict[str, str]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def saw(self, value: str) -> bool:
        return any(value in v for h in self.headers for v in h.values())


class _Recorder:
    def __init__(self, app: Any, record: Upstream) -> None:
        self._app = app
        self._record = record

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self._record.headers.append(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        await self._app(scope, receive, send)


def tools_app(record: Upstream) -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("regogate-test-tools", log_level="WARNING")

    @server.tool(description="Search the documents.")
    def search(query: str) -> str:
        record.calls.append(("search", {"query": query}))
        return f"3 documents match {query!r}"

    @server.tool(description="Write a file.")
    def write_file(path: str, content: str) -> str:
        record.calls.append(("write_file", {"path": path, "content": content}))
        return f"wrote {len(content)} bytes to {path}"

    @server.tool(description="Run a shell command.")
    def shell(command: str) -> str:
        record.calls.append(("shell", {"command": command}))
        return "ok"

    @server.tool(description="Read the deployment settings.")
    def read_settings() -> str:
        record.calls.append(("read_settings", {}))
        return f"region=eu-west-1 access_key={FAKE_SECRET}"

    @server.tool(description="Look up a customer.")
    def lookup(name: str) -> str:
        record.calls.append(("lookup", {"name": name}))
        return f"{name}: contact jane.doe@example.com, plan gold"

    @server.tool(description="Wait a long time.")
    async def slow(seconds: float) -> str:
        record.calls.append(("slow", {"seconds": seconds}))
        await asyncio.sleep(seconds)
        return "done"

    @server.tool(description="A large answer.")
    def big(size: int) -> str:
        record.calls.append(("big", {"size": size}))
        return "x" * size

    @server.tool(description="Report progress while working.")
    async def chatty(note: str, ctx: Context) -> str:
        record.calls.append(("chatty", {"note": note}))
        # Asked about the settings, it reports the key it read: a secret in a notification.
        message = f"working on {note}" if note != "settings" else f"read {FAKE_SECRET}"
        await ctx.report_progress(1, 2, message=message)
        return "finished"

    @server.resource("files://readme", name="readme", mime_type="text/plain")
    def readme() -> str:
        return "project readme"

    @server.resource("files://secrets", name="secrets", mime_type="text/plain")
    def secrets() -> str:
        return f"key={FAKE_SECRET}"

    @server.prompt(description="Review a change.")
    def review(change: str) -> str:
        return f"Review this change: {change}"

    return server.streamable_http_app(streamable_http_path="/mcp")


# The policy catalog entry the tests add for this server (data.gateway.mcp.servers.tools).
TOOLS_CATALOG: dict[str, Any] = {
    "groups": ["*"],
    "unlisted_tools": "deny",
    "tools": {
        "search": {"read_only": True},
        "read_settings": {"read_only": True},
        "lookup": {"read_only": True},
        "write_file": {},
        "shell": {},
        "slow": {"read_only": True},
        "big": {"read_only": True},
        "chatty": {"read_only": True},
    },
}


@asynccontextmanager
async def tools_server() -> AsyncIterator[Upstream]:
    record = Upstream(url="")
    server = LoopbackServer(_Recorder(tools_app(record), record))
    await server.start()
    record.url = server.url
    try:
        yield record
    finally:
        await server.close()
