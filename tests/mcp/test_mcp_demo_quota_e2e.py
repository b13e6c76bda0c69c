"""The demo MCP server on the embedded defaults (/mcp/demo), and tool-call quotas counted
per user and tool, atomically, on the memory store and on the real Redis."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError

from tests.conftest import drop_redis_prefix
from tests.harness import running_gateway
from tests.mcp.conftest import mcp_client, mcp_gateway
from tests.mcp.servers import Upstream


async def test_demo_server_on_embedded_defaults(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        url = f"{gw.url}/mcp/demo"
        async with mcp_client(url, gw.token("alice")) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            echoed = await session.call_tool("echo", {"text": "hello from alice"})
            with pytest.raises(MCPError) as refused:
                await session.call_tool("admin_report", {})
            resources = await session.list_resources()
            readme = await session.read_resource("demo://readme")
            prompt = await session.get_prompt("summarize", {"text": "a b c"})
        async with mcp_client(url, gw.token("carol")) as session:
            admin = {t.name for t in (await session.list_tools()).tools}
            report = await session.call_tool("admin_report", {})
    assert names == {"echo", "add", "word_count"}
    assert admin == names | {"admin_report"}
    assert echoed.content[0].text == "hello from alice"
    assert refused.value.data["reasons"] == ["tool_not_allowed"]
    assert "alice may not call demo/admin_report" in refused.value.message
    assert report.content[0].text.startswith("demo report")
    assert [str(r.uri) for r in resources.resources] == ["demo://readme"]
    assert "demo MCP server" in readme.contents[0].text
    assert "a b c" in prompt.messages[0].content.text


LIMITS = {"limits": {"tools/search": [{"scope": "user_tool", "window": "day", "max": 2,
                                       "name": "searches per day"}]}}


async def _calls(url: str, token: str, n: int) -> list[Any]:
    async with mcp_client(url, token) as session:
        async def one(i: int) -> Any:
            try:
                return await session.call_tool("search", {"query": f"q{i}"})
            except MCPError as exc:
                return exc

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _quota(tmp_path: Path, upstream: Upstream, config: dict[str, Any] | None) -> None:
    async with mcp_gateway(tmp_path, upstream, mcp_data=LIMITS, config=config) as gw:
        url = f"{gw.url}/mcp/tools"
        alice = await _calls(url, gw.token("alice"), 5)  # at once: the reservation is atomic
        bob = await _calls(url, gw.token("bob"), 1)
        records = await gw.audit_records()
    refused = [r for r in alice if isinstance(r, MCPError)]
    assert len(refused) == 3 and len(alice) - len(refused) == 2
    assert {e.code for e in refused} == {-32029}
    assert {e.data["status"] for e in refused} == {429}
    assert {e.data["reasons"][0] for e in refused} == {"tool_calls_per_day"}
    assert "searches per day" in refused[0].message
    assert not isinstance(bob[0], MCPError)  # bob's counter is his own
    assert sum(1 for name, _ in upstream.calls if name == "search") == 3
    denials = [r for r in records if r["event"] == "policy.deny"]
    assert len(denials) == 3
    assert all(d["decision"]["reasons"][0]["quota"]["scope"] == "user_tool" for d in denials)


async def test_tool_call_limit_per_user_and_tool(tmp_path: Path, upstream: Upstream) -> None:
    await _quota(tmp_path, upstream, None)


@pytest.mark.redis
async def test_tool_call_limit_on_redis(tmp_path: Path, upstream: Upstream,
                                        redis_url: str) -> None:
    prefix = f"regogate-test-{secrets.token_hex(4)}:"
    try:
        await _quota(tmp_path, upstream, {"usage": {"store": redis_url, "key_prefix": prefix}})
    finally:
        drop_redis_prefix(redis_url, prefix)
