"""A real gateway (create_app on embedded defaults, dev IdP on loopback) with the MCP
resource-server pieces installed, on a socket bound before the settings are made (so the
configured MCP resource names the real port)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from idp.testing import RunningIdp
from pep.app import create_app
from pep.config import settings_from_mapping
from pep.defaults import embedded_mapping
from pep.http.edge import GatewayRunner
from pep.mcp.auth_settings import McpResourceSettings
from pep.mcp.resource import setup_mcp_resource
from tests.harness import deep_merge

Setup = Callable[[web.Application], None]


@dataclass
class McpGateway:
    url: str
    resource: str
    app: web.Application
    idp: RunningIdp

    def token(self, user: str = "alice", **opts: Any) -> str:
        """A dev IdP token for the gateway's MCP resource (RFC 8707 audience)."""
        opts.setdefault("audience", self.resource)
        return self.idp.token(user, **opts)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def mcp_gateway(tmp_path: Path, idp: RunningIdp, setup: Setup | None = None, *,
                      servers: tuple[str, ...] = ("demo",), config: dict[str, Any] | None = None,
                      resource_extra: dict[str, Any] | None = None,
                      ) -> AsyncIterator[McpGateway]:
    sock = bound_socket()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    mapping = embedded_mapping(data_dir=tmp_path / "gw-data", issuer=idp.issuer, port=port)
    settings = settings_from_mapping(deep_merge(mapping, config or {}))
    app = create_app(settings)
    resource = McpResourceSettings(resource=f"{url}/mcp", **(resource_extra or {}))
    setup_mcp_resource(app, resource, servers)
    if setup is not None:
        setup(app)
    runner = GatewayRunner(app, handler_cancellation=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield McpGateway(url=url, resource=resource.resource, app=app, idp=idp)
    finally:
        await runner.cleanup()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
