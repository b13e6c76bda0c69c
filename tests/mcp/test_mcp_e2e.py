"""The MCP gateway end to end: official ``mcp`` SDK clients (streamable HTTP +
ClientSession) through the gateway to MCP servers built with the SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp.conftest import mcp_client, mcp_gateway
from tests.mcp.servers import FAKE_SECRET, Upstream


def _names(listing: object) -> set[str]:
    return {t.name for t in listing.tools}  # type: ignore[attr-defined]


async def test_alice_lists_and_calls_allowed_tools(tmp_path: Path, upstream: Upstream) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("alice")) as session:
            listing = await session.list_tools()
            # write_file and shell are the platform team's; everything else alice may call.
            assert _names(listing) == {"search", "read_settings", "lookup", "slow", "big"}
            result = await session.call_tool("search", {"query": "gateway"})
            assert result.is_error is False
            assert result.content[0].text == "3 documents match 'gateway'"
    assert ("search", {"query": "gateway"}) in upstream.calls


async def test_bob_sees_fewer_tools_and_is_refused_with_the_reason(
        tmp_path: Path, upstream: Upstream) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("carol")) as session:
            carol = _names(await session.list_tools())
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("bob")) as session:
            bob = _names(await session.list_tools())
            with pytest.raises(MCPError) as refused:
                await session.call_tool("write_file", {"path": "/etc/x", "content": "y"})
    assert carol == {"search", "read_settings", "lookup", "slow", "big", "write_file", "shell"}
    assert bob == {"search", "read_settings", "lookup", "slow", "big"}
    assert refused.value.code == -32003
    assert "bob may only call read-only tools" in refused.value.message
    assert refused.value.data["reasons"] == ["tool_not_read_only", "tool_platform_only"] or \
        set(refused.value.data["reasons"]) == {"tool_not_read_only", "tool_platform_only"}
    assert refused.value.data["status"] == 403
    assert not any(name == "write_file" for name, _ in upstream.calls)


async def test_the_users_token_never_reaches_the_upstream(tmp_path: Path,
                                                          upstream: Upstream) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        token = gw.token("alice")
        async with mcp_client(f"{gw.url}/mcp/tools", token) as session:
            await session.list_tools()
            await session.call_tool("search", {"query": "q"})
    assert upstream.headers, "the upstream saw no request"
    assert not upstream.saw(token)
    assert not any("authorization" in h for h in upstream.headers)
    assert all(h.get("x-upstream-key") == "upstream-credential-from-config"
               for h in upstream.headers)


async def test_secret_in_arguments_is_refused_and_personal_data_redacted(
        tmp_path: Path, upstream: Upstream) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("alice")) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("search", {"query": f"key {FAKE_SECRET}"})
            await session.call_tool("lookup", {"name": "write to ann@example.org"})
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("bob")) as session:
            with pytest.raises(MCPError) as contractor:
                await session.call_tool("lookup", {"name": "ann@example.org"})
    assert refused.value.data["reasons"] == ["secret_in_arguments"]
    assert contractor.value.data["reasons"] == ["personal_data_in_arguments"]
    assert not any(FAKE_SECRET in str(args) for _, args in upstream.calls)
    lookups = [args for name, args in upstream.calls if name == "lookup"]
    assert len(lookups) == 1 and "ann@example.org" not in lookups[0]["name"]
    assert "[EMAIL]" in lookups[0]["name"] or "EMAIL" in lookups[0]["name"]


async def test_a_tool_returning_a_secret_is_withheld(tmp_path: Path, upstream: Upstream) -> None:
    async with mcp_gateway(tmp_path, upstream) as gw:
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("alice")) as session:
            with pytest.raises(MCPError) as withheld:
                await session.call_tool("read_settings", {})
            # Personal data in a result is redacted (output_redact), the rest delivered.
            result = await session.call_tool("lookup", {"name": "Jane"})
    assert withheld.value.data["reasons"] == ["secret_in_output"]
    assert withheld.value.data["phase"] == "output"
    assert FAKE_SECRET not in str(withheld.value.data) + withheld.value.message
    assert ("read_settings", {}) in upstream.calls  # it ran; its answer was withheld
    text = result.content[0].text
    assert "jane.doe@example.com" not in text and "plan gold" in text
