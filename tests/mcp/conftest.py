"""Fixtures for the MCP gateway tests: the shipped policies with the test server in the
catalog, a gateway (real dev IdP, embedded engine, SQLite audit) with upstream MCP servers
built with the ``mcp`` SDK, and official SDK clients."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from pep.defaults import repo_policies_dir
from tests.harness import Gateway, running_gateway
from tests.mcp.servers import TOOLS_CATALOG, Upstream, tools_server

UPSTREAM_KEY = "upstream-credential-from-config"


def policy_bundle(root: Path, mcp_data: dict[str, Any] | None = None) -> Path:
    """The shipped policies, with the test server ``tools`` added to the MCP catalog and
    ``mcp_data`` merged over data.gateway.mcp."""
    bundle = root / "bundle"
    shutil.copytree(repo_policies_dir(), bundle)
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    data["gateway"]["mcp"]["servers"]["tools"] = TOOLS_CATALOG
    data["gateway"]["mcp"].update(mcp_data or {})
    (bundle / "data.yaml").write_text(yaml.safe_dump(data))
    return bundle


@asynccontextmanager
async def mcp_gateway(tmp_path: Path, upstream: Upstream, *, mcp: dict[str, Any] | None = None,
                      mcp_data: dict[str, Any] | None = None,
                      config: dict[str, Any] | None = None, port: int = 0
                      ) -> AsyncIterator[Gateway]:
    servers = {"tools": {"url": upstream.url, "timeout_s": 5,
                         "auth": {"type": "static",
                                  "headers": {"X-Upstream-Key": UPSTREAM_KEY}}}}
    cfg: dict[str, Any] = {
        "policy": {"bundle": str(policy_bundle(tmp_path, mcp_data))},
        "mcp": {"servers": servers, **(mcp or {})},
        **(config or {}),
    }
    async with running_gateway(tmp_path, config=cfg, port=port) as gw:
        yield gw


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with tools_server() as up:
        yield up


@asynccontextmanager
async def mcp_client(url: str, token: str) -> AsyncIterator[Any]:
    """The official SDK client: streamable-HTTP transport + ClientSession, initialized."""
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session
