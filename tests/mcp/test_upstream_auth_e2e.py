"""Upstream credentials and stdio upstreams through /mcp/{server}, end to end: the official
``mcp`` SDK client, the gateway, and upstream MCP servers built with the SDK (streamable HTTP
on 127.0.0.1, and a stdio server the gateway launches). Assertions about what the upstream
received are made on the upstream's side."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp.shared.exceptions import MCPError

from idp.testing import RunningIdp, running_idp
from pep import appkeys
from pep.mcp.credentials import TokenExchangeCredentials
from pep.mcp.stdio_upstream import StdioUpstream
from tests.mcp.authgw import McpGateway, claims_of, full_gateway
from tests.mcp.conftest import mcp_client
from tests.mcp.servers import TOOLS_CATALOG, Upstream, tools_server

ROOT = Path(__file__).resolve().parents[2]
STATIC_KEY = "static-upstream-key-from-config"


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path / "idp") as server:
        yield server


@pytest.fixture
async def tickets() -> AsyncIterator[Upstream]:
    async with tools_server() as up:
        yield up


@pytest.fixture
async def docs() -> AsyncIterator[Upstream]:
    async with tools_server() as up:
        yield up


def exchange_auth(idp: RunningIdp, resource: str, **kw: Any) -> dict[str, Any]:
    return {"type": "token_exchange", "token_endpoint": idp.token_endpoint,
            "client_id": "regogate-gateway", "client_secret": "regogate-gateway-secret",
            "resource": resource, **kw}


def bearer_tokens(up: Upstream) -> list[str]:
    return [v.removeprefix("Bearer ") for h in up.headers for k, v in h.items()
            if k.lower() == "authorization"]


async def test_token_exchange_gives_the_upstream_a_token_bound_to_it_never_the_users(
    tmp_path: Path, idp: RunningIdp, tickets: Upstream, docs: Upstream
) -> None:
    servers = {
        "tickets": {"url": tickets.url, "auth": exchange_auth(idp, tickets.url)},
        "docs": {"url": docs.url, "auth": {"type": "static",
                                           "headers": {"X-Docs-Key": STATIC_KEY}}},
    }
    async with full_gateway(tmp_path, idp, servers) as gw:
        alice = gw.token("alice")
        async with mcp_client(f"{gw.url}/mcp/tickets", alice) as session:
            await session.list_tools()
            result = await session.call_tool("search", {"query": "open tickets"})
            await session.call_tool("lookup", {"name": "acme"})
        async with mcp_client(f"{gw.url}/mcp/docs", alice) as session:
            await session.call_tool("search", {"query": "manual"})
        creds = gw.app[appkeys.MCP].credentials["tickets"]
        assert isinstance(creds, TokenExchangeCredentials)
        exchanges = creds.exchanges
    assert result.content[0].text == "3 documents match 'open tickets'"
    # Upstream side: an exchanged token for tickets, the static key for docs, never alice's.
    issued = set(bearer_tokens(tickets))
    assert len(issued) == 1
    claims = claims_of(issued.pop())
    assert claims["aud"] == tickets.url and claims["sub"] == "alice"
    assert claims["act"] == {"sub": "regogate-gateway"}
    assert all(h.get("x-docs-key") == STATIC_KEY for h in docs.headers)
    assert bearer_tokens(docs) == []
    for up in (tickets, docs):
        assert up.headers and not up.saw(alice)
    assert ("search", {"query": "open tickets"}) in tickets.calls
    # One exchange served the whole session (cached per server, user and token).
    assert exchanges == 1


async def test_each_user_gets_their_own_exchanged_token(
    tmp_path: Path, idp: RunningIdp, tickets: Upstream
) -> None:
    servers = {"tickets": {"url": tickets.url, "auth": exchange_auth(idp, tickets.url)}}
    async with full_gateway(tmp_path, idp, servers, catalog={"tickets": TOOLS_CATALOG}) as gw:
        for user in ("alice", "bob"):
            async with mcp_client(f"{gw.url}/mcp/tickets", gw.token(user)) as session:
                await session.call_tool("search", {"query": user})
    subjects = {claims_of(t)["sub"] for t in bearer_tokens(tickets)}
    assert subjects == {"alice", "bob"}


async def test_a_failed_exchange_refuses_the_call_and_nothing_reaches_the_upstream(
    tmp_path: Path, idp: RunningIdp, tickets: Upstream
) -> None:
    servers = {"tickets": {"url": tickets.url, "auth": exchange_auth(
        idp, tickets.url, client_secret="not-the-secret")}}
    async with full_gateway(tmp_path, idp, servers) as gw:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                    f"{gw.url}/mcp/tickets",
                    json={"jsonrpc": "2.0", "id": 1, "method": "initialize",
                          "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                     "clientInfo": {"name": "t", "version": "1"}}},
                    headers={"Authorization": f"Bearer {gw.token('alice')}",
                             "Accept": "application/json, text/event-stream"}) as resp:
                status, body = resp.status, await resp.json()
    # A JSON-RPC error object (the MCP transport's answer), carrying the 503-equivalent.
    assert status == 200, body
    assert body["jsonrpc"] == "2.0" and body["id"] == 1
    assert body["error"]["data"]["status"] == 503
    assert "nothing was forwarded" in body["error"]["message"]
    assert "not-the-secret" not in str(body)
    assert tickets.headers == [] and tickets.calls == []


def stdio_server(**kw: Any) -> dict[str, Any]:
    return {"type": "stdio", "timeout_s": 3, "breaker_failures": 100,
            "stdio": {"command": sys.executable, "args": ["-m", "tests.mcp.stdio_server"],
                      "cwd": str(ROOT), "restart_backoff_initial_s": 0.05,
                      "restart_backoff_max_s": 0.2, "startup_timeout_s": 30, **kw}}


async def wait_ready(gw: McpGateway, name: str, restarts: int) -> None:
    upstream = gw.app[appkeys.MCP].upstreams[name]
    assert isinstance(upstream, StdioUpstream)
    for _ in range(600):
        if upstream.ready and upstream.restarts >= restarts:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(upstream.status())


async def test_a_stdio_server_launched_by_the_gateway_serves_tools_and_survives_failures(
    tmp_path: Path, idp: RunningIdp
) -> None:
    async with full_gateway(tmp_path, idp, {"local": stdio_server()}) as gw:
        alice = gw.token("alice")
        async with mcp_client(f"{gw.url}/mcp/local", alice) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert {"echo", "crash", "hang", "garbage"} <= names
            echoed = await session.call_tool("echo", {"text": "via stdio"})
            assert echoed.content[0].text == "via stdio"

            # crash: the call fails as an upstream error; the gateway restarts the child.
            with pytest.raises(MCPError) as crashed:
                await session.call_tool("crash", {})
            assert crashed.value.data["status"] == 502
            await wait_ready(gw, "local", 1)
            back = await session.call_tool("echo", {"text": "restarted"})
            assert back.content[0].text == "restarted"

            # hang: a timeout error, and the child keeps serving.
            with pytest.raises(MCPError) as hung:
                await session.call_tool("hang", {})
            assert hung.value.data["status"] == 504

            # garbage on stdout: an error, then a fresh child.
            with pytest.raises(MCPError) as garbled:
                await session.call_tool("garbage", {})
            assert garbled.value.data["status"] == 502
            await wait_ready(gw, "local", 2)
            again = await session.call_tool("echo", {"text": "clean again"})
            assert again.content[0].text == "clean again"
        records = [r for r in await _records(gw) if r["event"] in ("upstream.error",
                                                                    "request.completion")]
    assert any(r["event"] == "upstream.error" for r in records)


async def test_the_stdio_child_never_sees_the_users_token_or_the_gateways_environment(
    tmp_path: Path, idp: RunningIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGOGATE_GATEWAY_ONLY_SECRET", "gw-only-value")
    async with full_gateway(tmp_path, idp, {"local": stdio_server(
            env={"LOCAL_KEY": "configured-for-child"})}) as gw:
        async with mcp_client(f"{gw.url}/mcp/local", gw.token("alice")) as session:
            gateway_env = await session.call_tool("env", {"name": "REGOGATE_GATEWAY_ONLY_SECRET"})
            configured = await session.call_tool("env", {"name": "LOCAL_KEY"})
    assert gateway_env.content[0].text == "unset"
    assert configured.content[0].text == "set"


async def _records(gw: McpGateway) -> list[dict[str, Any]]:
    from pep.audit.factory import store_url
    from pep.audit.reader import open_reader

    settings = gw.app[appkeys.SETTINGS]
    reader = open_reader(store_url(settings.audit, settings.server.data_dir))
    try:
        return [r.doc() async for r in reader.records()]
    finally:
        await reader.close()
