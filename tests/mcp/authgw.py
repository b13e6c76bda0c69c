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
    # The MCP proxy off: these tests install the resource-server pieces (and their own
    # probe route) by hand, to test them apart from the proxy.
    mapping = deep_merge(mapping, {"mcp": {"enabled": False}})
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


def bundle_with(root: Path, catalog: dict[str, Any],
                defaults: dict[str, Any] | None = None) -> Path:
    """The shipped policies (with the core tests' ``tools`` server) plus ``catalog`` entries
    under data.gateway.mcp.servers, and ``defaults`` for servers not in it yet."""
    import yaml

    from tests.mcp.conftest import policy_bundle

    bundle = policy_bundle(root)
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    servers = data["gateway"]["mcp"]["servers"]
    servers.update(catalog)
    for name, entry in (defaults or {}).items():
        servers.setdefault(name, entry)
    (bundle / "data.yaml").write_text(yaml.safe_dump(data))
    return bundle


@asynccontextmanager
async def full_gateway(tmp_path: Path, idp: RunningIdp, servers: dict[str, Any], *,
                       catalog: dict[str, Any] | None = None,
                       mcp: dict[str, Any] | None = None) -> AsyncIterator[McpGateway]:
    """The whole gateway (MCP proxy at /mcp/{server}, ``mcp.resource`` = <url>/mcp) with
    ``servers`` as configured upstreams; a server not in the policy catalog (or ``catalog``)
    is added to it open to all groups and tools."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    defaults = {name: {"groups": ["*"], "unlisted_tools": "allow"} for name in servers}
    mapping = deep_merge(
        embedded_mapping(data_dir=tmp_path / "gw-data", issuer=idp.issuer, port=port),
        {"policy": {"bundle": str(bundle_with(tmp_path, catalog or {}, defaults))},
         "mcp": {"servers": servers, "resource": {"resource": f"{url}/mcp"}, **(mcp or {})}})
    app = create_app(settings_from_mapping(mapping))
    runner = GatewayRunner(app, handler_cancellation=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield McpGateway(url=url, resource=f"{url}/mcp", app=app, idp=idp)
    finally:
        await runner.cleanup()


def claims_of(token: str) -> dict[str, Any]:
    """The (unverified) payload of a compact JWS, for assertions on tokens the test holds."""
    import base64
    import json

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
