"""The MCP gateway component: upstreams by server name, their circuit breakers, the user-bound
session store and the tool-call counters. Built by ``pep.app`` when ``mcp.servers`` is set,
as one cleanup_ctx component (started after the HTTP session, closed before it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp

from pep.mcp.credentials import UpstreamCredentials, credentials_for
from pep.mcp.http_upstream import HttpUpstream
from pep.mcp.sessions import SessionStore
from pep.mcp.settings import McpServerSettings, McpSettings
from pep.mcp.upstream import McpUpstream
from pep.routing.breaker import CircuitBreaker
from pep.usage.settings import UsageSettings
from pep.usage.tracker import UsageTracker, open_tracker


class McpGateway:
    def __init__(self, settings: McpSettings, usage: UsageSettings,
                 session: Callable[[], aiohttp.ClientSession], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.sessions = SessionStore(idle_s=settings.session_idle_s,
                                     max_per_user=settings.max_sessions_per_user)
        # Tool calls are counted apart from model calls (their own key namespace), so a
        # tool-call limit never spends a model request quota and vice versa.
        self.usage: UsageTracker = open_tracker(usage.model_copy(update={
            "key_prefix": usage.key_prefix + "mcp:", "prices": {}, "default_price": None}))
        self.breakers = {name: CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s, clock)
                         for name, s in settings.servers.items()}
        self._http = session
        self.upstreams: dict[str, McpUpstream] = {}
        self.credentials: dict[str, UpstreamCredentials] = {
            name: credentials_for(s.auth, session) for name, s in settings.servers.items()}

    def server(self, name: str) -> McpServerSettings | None:
        return self.settings.servers.get(name)

    async def start(self) -> None:
        await self.usage.start()
        for name, s in self.settings.servers.items():
            upstream: McpUpstream
            if s.type == "stdio":
                from pep.mcp.stdio_upstream import StdioUpstream

                assert s.stdio is not None  # settings: type stdio has its stdio block
                upstream = StdioUpstream(name, s.stdio)
            elif s.type == "demo":
                from pep.mcp.demo import DemoUpstream

                upstream = self._demo = DemoUpstream(
                    name, self._http, max_bytes=self.settings.max_upstream_bytes,
                    connect_timeout_s=s.connect_timeout_s)
            else:
                assert s.url is not None  # settings: an http server has a url
                upstream = HttpUpstream(name, s.url, self._http,
                                        max_bytes=self.settings.max_upstream_bytes,
                                        connect_timeout_s=s.connect_timeout_s)
            await upstream.start()
            self.upstreams[name] = upstream

    async def close(self) -> None:
        for upstream in self.upstreams.values():
            await upstream.close()
        await self.usage.close()

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        open_ = sorted(n for n, b in self.breakers.items() if b.is_open)
        return True, {"servers": len(self.upstreams), "breakers_open": open_}
