"""The supervised stdio upstream against a real stdio MCP server built with the ``mcp`` SDK
(tests/mcp/stdio_server.py), launched by the gateway's code as a child process."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pep.mcp.stdio_settings import StdioServerSettings
from pep.mcp.stdio_upstream import StdioUpstream
from pep.mcp.upstream import UpstreamTimeout, UpstreamUnavailable

ROOT = Path(__file__).resolve().parents[2]


def settings(**kw: Any) -> StdioServerSettings:
    base: dict[str, Any] = {"command": sys.executable, "args": ("-m", "tests.mcp.stdio_server"),
                            "cwd": ROOT, "inherit_env": ("PATH", "HOME", "LANG"),
                            "restart_backoff_initial_s": 0.05, "restart_backoff_max_s": 0.4,
                            "startup_timeout_s": 20.0}
    base.update(kw)
    return StdioServerSettings(**base)


@pytest.fixture
async def upstream() -> AsyncIterator[StdioUpstream]:
    up = StdioUpstream("local", settings())
    await up.start()
    try:
        yield up
    finally:
        await up.close()


async def call(up: StdioUpstream, tool: str, args: dict[str, Any] | None = None, *,
               msg_id: Any = 1, timeout_s: float = 20.0) -> dict[str, Any]:
    reply = await up.send({"jsonrpc": "2.0", "id": msg_id, "method": "tools/call",
                           "params": {"name": tool, "arguments": args or {}}},
                          headers={}, session_id=None, timeout_s=timeout_s)
    assert reply.status == 200 and len(reply.messages) == 1
    return reply.messages[0]


async def wait_ready(up: StdioUpstream, restarts: int) -> None:
    for _ in range(400):
        if up.ready and up.restarts >= restarts:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not restarted: {up.status()}")


async def test_the_gateway_launches_the_server_and_lists_and_calls_its_tools(
    upstream: StdioUpstream,
) -> None:
    assert upstream.ready and upstream.pid is not None
    init = await upstream.send({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                "params": {"protocolVersion": "2025-06-18"}},
                               headers={}, session_id=None, timeout_s=5)
    assert init.messages[0]["id"] == 0
    assert init.messages[0]["result"]["serverInfo"]["name"] == "regogate-test-stdio"
    listed = await upstream.send({"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
                                 headers={}, session_id=None, timeout_s=20)
    names = {t["name"] for t in listed.messages[0]["result"]["tools"]}
    assert {"echo", "crash", "hang", "garbage"} <= names
    answer = await call(upstream, "echo", {"text": "hello"}, msg_id="abc")
    assert answer["id"] == "abc"
    assert answer["result"]["content"][0]["text"] == "hello"


async def test_concurrent_callers_with_the_same_id_each_get_their_own_answer(
    upstream: StdioUpstream,
) -> None:
    answers = await asyncio.gather(*(call(upstream, "echo", {"text": f"t{i}"}, msg_id=1)
                                     for i in range(8)))
    assert [a["result"]["content"][0]["text"] for a in answers] == [f"t{i}" for i in range(8)]
    assert all(a["id"] == 1 for a in answers)


async def test_the_child_gets_only_configured_and_inherited_environment() -> None:
    os.environ["REGOGATE_TEST_GATEWAY_SECRET"] = "gateway-only"
    try:
        up = StdioUpstream("envtest", settings(env={"UPSTREAM_KEY": "k-123456"}))
        await up.start()
        try:
            leaked = await call(up, "env", {"name": "REGOGATE_TEST_GATEWAY_SECRET"})
            configured = await call(up, "env", {"name": "UPSTREAM_KEY"})
        finally:
            await up.close()
    finally:
        del os.environ["REGOGATE_TEST_GATEWAY_SECRET"]
    assert leaked["result"]["content"][0]["text"] == "unset"
    assert configured["result"]["content"][0]["text"] == "set"


async def test_a_crash_fails_the_pending_call_and_the_server_is_restarted(
    upstream: StdioUpstream,
) -> None:
    first_pid = upstream.pid
    with pytest.raises(UpstreamUnavailable, match="exited"):
        await call(upstream, "crash")
    await wait_ready(upstream, 1)
    assert upstream.pid != first_pid
    assert upstream.status()["last_exit"] == 3
    answer = await call(upstream, "echo", {"text": "back"})
    assert answer["result"]["content"][0]["text"] == "back"


async def test_while_restarting_calls_are_refused_as_unavailable() -> None:
    up = StdioUpstream("slowstart", settings(restart_backoff_initial_s=5.0))
    await up.start()
    try:
        with pytest.raises(UpstreamUnavailable):
            await call(up, "crash")
        with pytest.raises(UpstreamUnavailable, match="not running"):
            await call(up, "echo", {"text": "x"})
    finally:
        await up.close()


async def test_repeated_crashes_back_off_exponentially_up_to_the_maximum() -> None:
    up = StdioUpstream("flaky", settings())
    await up.start()
    try:
        for n in range(1, 6):
            await wait_ready(up, n - 1)
            with pytest.raises(UpstreamUnavailable):
                await call(up, "crash")
        await wait_ready(up, 5)
    finally:
        await up.close()
    assert up.planned_delays[:5] == [0.05, 0.1, 0.2, 0.4, 0.4]


async def test_a_hung_call_times_out_and_the_server_stays_usable(
    upstream: StdioUpstream,
) -> None:
    with pytest.raises(UpstreamTimeout):
        await call(upstream, "hang", timeout_s=0.5)
    assert upstream.status()["in_flight"] == 0
    answer = await call(upstream, "echo", {"text": "still here"})
    assert answer["result"]["content"][0]["text"] == "still here"
    assert upstream.restarts == 0


async def test_garbage_on_stdout_is_an_error_and_the_server_is_restarted(
    upstream: StdioUpstream,
) -> None:
    with pytest.raises(UpstreamUnavailable, match="not JSON"):
        await call(upstream, "garbage")
    await wait_ready(upstream, 1)
    answer = await call(upstream, "echo", {"text": "clean"})
    assert answer["result"]["content"][0]["text"] == "clean"


async def test_a_command_that_does_not_exist_never_stops_the_gateway() -> None:
    up = StdioUpstream("missing", settings(command="/nonexistent/mcp-server", args=(),
                                           startup_timeout_s=0.5))
    await up.start()
    try:
        assert not up.ready
        with pytest.raises(UpstreamUnavailable, match="not running"):
            await call(up, "echo", {"text": "x"})
    finally:
        await up.close()


async def test_a_server_that_exits_at_start_is_retried_not_fatal() -> None:
    up = StdioUpstream("dies", settings(env={"STDIO_TEST_FAIL_AT_START": "1"},
                                        startup_timeout_s=1.0))
    await up.start()
    try:
        await asyncio.sleep(0.5)
        assert not up.ready
        assert up.restarts >= 1
    finally:
        await up.close()
    assert up.pid is None


async def test_stderr_is_logged_with_configured_secrets_and_tokens_masked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="regogate.mcp.stdio")
    up = StdioUpstream("chatty", settings(env={"FILES_TOKEN": "s3cr3t-value-42"}))
    await up.start()
    try:
        await call(up, "whisper", {"text": "key s3cr3t-value-42 and Bearer eyJhbGciOi.e30.sig"})
        for _ in range(100):
            if any("log line" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    finally:
        await up.close()
    lines = [r.getMessage() for r in caplog.records if "log line" in r.getMessage()]
    assert lines, caplog.text
    assert "s3cr3t-value-42" not in caplog.text and "eyJhbGciOi" not in caplog.text
    assert "key *** and Bearer ***" in lines[0]


async def test_notifications_from_the_caller_are_accepted_and_initialized_is_absorbed(
    upstream: StdioUpstream,
) -> None:
    for method in ("notifications/initialized", "notifications/cancelled",
                   "notifications/roots/list_changed"):
        reply = await upstream.send({"jsonrpc": "2.0", "method": method}, headers={},
                                    session_id=None, timeout_s=5)
        assert (reply.status, reply.messages) == (202, [])
    answer = await call(upstream, "echo", {"text": "ok"})
    assert answer["result"]["content"][0]["text"] == "ok"


async def test_close_stops_the_child_process(upstream: StdioUpstream) -> None:
    pid = upstream.pid
    assert pid is not None
    await upstream.close()
    assert upstream.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
