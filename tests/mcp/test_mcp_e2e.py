"""The MCP gateway end to end: official ``mcp`` SDK clients (streamable HTTP +
ClientSession) through the gateway to MCP servers built with the SDK."""

from __future__ import annotations

import asyncio
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
            assert _names(listing) == {"search", "read_settings", "lookup", "slow", "big", "chatty"}
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
    assert carol == {"search", "read_settings", "lookup", "slow", "big", "chatty", "write_file",
                     "shell"}
    assert bob == {"search", "read_settings", "lookup", "slow", "big", "chatty"}
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


async def test_every_call_is_in_verified_per_user_trails(tmp_path: Path, upstream: Upstream,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    from pep.audit.checkpoints import DEFAULT_PUBLIC_KEY_NAME, load_public_key
    from pep.audit.cli import verify_user
    from pep.audit.factory import store_url
    from pep.audit.reader import open_reader
    from pep.audit.verify import verify_trail
    from pep.cli import main

    async with mcp_gateway(tmp_path, upstream) as gw:
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("alice")) as session:
            await session.call_tool("search", {"query": "audit me"})
        async with mcp_client(f"{gw.url}/mcp/tools", gw.token("bob")) as session:
            with pytest.raises(MCPError):
                await session.call_tool("shell", {"command": "id"})
        client = gw.openai("alice")
        await client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        records = await gw.audit_records()
        url = store_url(gw.settings.audit, gw.settings.server.data_dir)
        key = load_public_key(gw.settings.server.data_dir / DEFAULT_PUBLIC_KEY_NAME)
        reader = open_reader(url)
        try:
            whole = await verify_trail(reader, public_keys=[key])
            alice = await verify_user(reader, "alice", [key])
            bob = await verify_user(reader, "bob", [key])
        finally:
            await reader.close()
    assert whole.valid and alice.valid and bob.valid, (whole, alice, bob)
    mcp = [r for r in records if r["what"].get("api") == "mcp"]
    call = next(r for r in mcp if r["event"] == "request.completion"
                and r["extra"]["mcp"].get("tool") == "search")
    info = call["extra"]["mcp"]
    assert info["server"] == "tools" and info["method"] == "tools/call"
    assert len(info["arguments_sha256"]) == 64 and info["result_status"] == "ok"
    assert info["request_bytes"] > 0 and info["response_bytes"] > 0
    assert call["outcome"]["status"] == 200 and call["outcome"]["latency_ms"] > 0
    assert call["decision_id"] == call["request_id"]
    assert call["content"]["mode"] == "digest" and "prompt" not in call["content"]
    intent = next(r for r in mcp if r["event"] == "request.intent"
                  and r["request_id"] == call["request_id"])
    assert intent["decision"]["allow"] is True
    denied = next(r for r in mcp if r["event"] == "policy.deny")
    assert denied["who"]["subject"] == "bob" and denied["extra"]["mcp"]["tool"] == "shell"
    assert {x["code"] for x in denied["decision"]["reasons"]} == {"tool_not_read_only",
                                                                  "tool_platform_only"}
    # Every request ends in exactly one terminal record, MCP or model call alike.
    from pep.steps import TERMINAL_EVENTS

    by_request: dict[str, list[str]] = {}
    for r in records:
        by_request.setdefault(r["request_id"], []).append(r["event"])
    assert all(sum(e in TERMINAL_EVENTS for e in events) == 1
               for events in by_request.values()), by_request
    # `regogate audit query --api mcp`: the MCP records only, beside the model call's.
    capsys.readouterr()
    assert await asyncio.to_thread(
        main, ["audit", "query", "--store", url, "--api", "mcp", "--user", "alice"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines and all('"api":"mcp"' in line for line in lines)
    assert await asyncio.to_thread(
        main, ["audit", "query", "--store", url, "--api", "chat.completions"]) == 0
    assert '"model_requested":"mock-gpt"' in capsys.readouterr().out


async def test_notifications_reach_the_client_checked_with_the_answer(
        tmp_path: Path, upstream: Upstream) -> None:
    from typing import Any

    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    logged: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        logged.append(message)

    async with mcp_gateway(tmp_path, upstream) as gw:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {gw.token('alice')}"})
        async with http, streamable_http_client(f"{gw.url}/mcp/tools", http_client=http) as (
                read, write), ClientSession(read, write) as session:
            await session.initialize()
            ok = await session.call_tool("chatty", {"note": "the report"},
                                         progress_callback=on_progress)
            # A secret in a log notification withholds the answer it came with.
            with pytest.raises(MCPError) as withheld:
                await session.call_tool("chatty", {"note": "settings"},
                                        progress_callback=on_progress)
    assert getattr(ok.content[0], "text", None) == "finished"
    assert logged == ["working on the report"]  # the second one never reached the client
    assert withheld.value.data["reasons"] == ["secret_in_output"]
    assert ("chatty", {"note": "settings"}) in upstream.calls
