"""GET /usage/v1/counters and the `regogate usage` CLI against a served tracker.

The authoriser here is a stand-in for pep.access.authorize (token -> policy usage.read);
tests/e2e/test_quotas_e2e.py exercises the real one through the whole gateway."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pep import appkeys
from pep.errors import GatewayError, PolicyDenied, Unauthorized, to_body
from pep.principal import Principal
from pep.usage.api import setup_usage_routes
from pep.usage.cli import fetch_counters, register, render_table
from pep.usage.counters import CounterTracker

READER = Principal(sub="erin", issuer="https://idp", groups=("auditors",))
BOB = Principal(sub="bob", issuer="https://idp", teams=("sales",))


class Gatekeeper:
    """Token 'reader' is allowed usage.read; 'nobody' is denied by policy; else 401."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, request: web.Request, *, api: str,
                       params: dict[str, Any] | None = None) -> Principal:
        self.calls.append({"api": api, "params": params})
        auth = request.headers.get("Authorization", "")
        if auth == "Bearer reader":
            return READER
        if auth == "Bearer nobody":
            raise PolicyDenied("usage.read is not allowed", code="api_not_allowed")
        raise Unauthorized("missing bearer token", code="missing_token")


@web.middleware
async def render_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except GatewayError as err:
        return web.json_response(to_body(err), status=err.status, headers=err.headers)


@pytest.fixture
async def served(tracker: CounterTracker) -> AsyncIterator[tuple[str, Gatekeeper, CounterTracker]]:
    gate = Gatekeeper()
    app = web.Application(middlewares=[render_errors])
    app[appkeys.USAGE] = tracker
    setup_usage_routes(app, authorize=gate)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), gate, tracker
    finally:
        await server.close()


async def _get(url: str, token: str | None) -> tuple[int, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.json()


async def test_reader_sees_current_counters(served: Any) -> None:
    url, gate, tracker = served
    await tracker.record(BOB, "chat-ui", "mock-gpt", 10, 5, estimated=False)
    status, body = await _get(f"{url}/usage/v1/counters?scope=user&window=day", "reader")
    assert status == 200
    assert body["store"] == tracker.kind
    assert [(r["id"], r["tokens"], r["window"]) for r in body["data"]] == [("bob", 15, "day")]
    assert gate.calls == [{"api": "usage.read", "params": {"scope": "user", "window": "day"}}]


async def test_request_without_token_is_401(served: Any) -> None:
    url, _, _ = served
    status, body = await _get(f"{url}/usage/v1/counters", None)
    assert status == 401 and body["error"]["code"] == "missing_token"


async def test_caller_the_policy_refuses_gets_403(served: Any) -> None:
    url, _, _ = served
    status, body = await _get(f"{url}/usage/v1/counters", "nobody")
    assert status == 403 and body["error"]["code"] == "api_not_allowed"


@pytest.mark.parametrize("query, param", [
    ("scope=org", "scope"), ("window=week", "window"), ("colour=red", "colour"),
])
async def test_bad_query_is_a_400_naming_the_parameter(served: Any, query: str, param: str) -> None:
    url, gate, _ = served
    status, body = await _get(f"{url}/usage/v1/counters?{query}", "reader")
    assert status == 400 and body["error"]["param"] == param
    assert gate.calls == []  # rejected before any policy work


async def test_cli_fetches_and_filters_through_the_gateway(served: Any) -> None:
    url, _, tracker = served
    await tracker.record(BOB, "chat-ui", "mock-gpt", 1000, 100, estimated=True)
    rows = await asyncio.to_thread(fetch_counters, url, "reader", "team", "sales", "month")
    assert [(r["scope"], r["id"], r["window"], r["requests"]) for r in rows] == [
        ("team", "sales", "month", 1)]
    table = render_table(rows)
    assert "sales" in table and "0.004500 (est.)" in table


async def test_cli_reports_a_refusal_with_the_gateway_message(
    served: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, _ = served
    parser = argparse.ArgumentParser(prog="regogate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["usage", "--url", url, "--token", "nobody"])
    assert await args.func(args) == 1
    assert "403: usage.read is not allowed (api_not_allowed)" in capsys.readouterr().err


async def test_cli_prints_json_rows(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url, _, tracker = served
    await tracker.record(BOB, None, "mock-gpt", 1, 1, estimated=False)
    parser = argparse.ArgumentParser(prog="regogate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["usage", "--url", url, "--token", "reader", "--json",
                              "--window", "minute", "--scope", "user"])
    assert await args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["tokens"]) for r in rows] == [("bob", 2)]


async def test_cli_without_a_token_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REGOGATE_TOKEN", raising=False)
    parser = argparse.ArgumentParser(prog="regogate")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["usage"])
    assert await args.func(args) == 1
    assert "regogate token" in capsys.readouterr().err


@pytest.mark.redis
async def test_cli_reads_redis_directly_when_the_config_names_it(
    tmp_path: Any, redis_url: str, redis_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from pep.defaults import embedded_mapping
    from pep.usage.settings import UsageSettings
    from pep.usage.tracker import open_tracker

    usage = {"store": redis_url, "key_prefix": redis_prefix}
    mapping = embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:1", port=1)
    mapping["usage"] = usage
    config = tmp_path / "regogate.yaml"
    config.write_text(yaml.safe_dump(mapping))
    replica = open_tracker(UsageSettings(**usage))
    await replica.start()
    try:
        await replica.record(BOB, "chat-ui", "mock-gpt", 7, 3, estimated=False)
    finally:
        await replica.close()
    parser = argparse.ArgumentParser(prog="regogate")
    register(parser.add_subparsers(dest="command"))
    # No token and no gateway: port 1 would refuse, so this can only have come from Redis.
    args = parser.parse_args(["usage", "--config", str(config), "--scope", "client",
                              "--window", "month", "--json"])
    assert await args.func(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["window"], r["tokens"]) for r in rows] == [("chat-ui", "month", 10)]
