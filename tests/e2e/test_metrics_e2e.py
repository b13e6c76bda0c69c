"""/metrics as Prometheus scrapes it: parsed with prometheus_client's own text parser after
real SDK traffic through the gateway; every series has its declared type, and the client's
mistakes are counted as client errors, never as provider or internal errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pep import metrics as metrics_mod
from pep.metrics import CATALOGUE, Metrics, MetricsMisuse
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import running_gateway

ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Hello"}]


async def _scrape(url: str) -> tuple[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        assert r.status == 200
        ctype = r.headers["Content-Type"]
        text = await r.text()
    return ctype, {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    return float(sum(s.value for s in families[family].samples
               if s.name == sample and labels.items() <= s.labels.items()))


async def test_metrics_scrape_has_typed_series_for_requests_latency_tokens_and_components(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        alice = gw.openai("alice")
        await alice.chat.completions.create(model="mock-gpt", messages=HELLO)
        stream = await alice.chat.completions.create(model="mock-gpt", messages=HELLO,
                                                     stream=True)
        async for _ in stream:
            pass
        with pytest.raises(openai.PermissionDeniedError):
            await gw.openai("bob").chat.completions.create(model="mock-gpt-admin",
                                                           messages=HELLO)
        with pytest.raises(openai.AuthenticationError):
            await gw.openai(token="not-a-token").chat.completions.create(
                model="mock-gpt", messages=HELLO)
        with pytest.raises(openai.NotFoundError):
            await alice.chat.completions.create(model="mock-gtp", messages=HELLO)  # typo
        ctype, fam = await _scrape(gw.url)
    assert ctype.startswith("text/plain; version=0.0.4")
    types = {name: f.type for name, f in fam.items()}
    for name, kind in {
        "regogate_requests": "counter", "regogate_request_duration_seconds": "histogram",
        "regogate_policy_duration_seconds": "histogram",
        "regogate_upstream_duration_seconds": "histogram",
        "regogate_time_to_first_token_seconds": "histogram",
        "regogate_audit_write_duration_seconds": "histogram",
        "regogate_tokens": "counter", "regogate_cost_usd": "counter",
        "regogate_client_errors": "counter", "regogate_auth_failures": "counter",
        "regogate_policy_denials": "counter", "regogate_circuit_breaker_open": "gauge",
        "regogate_jwks_keys": "gauge", "regogate_jwks_fetches": "counter",
        "regogate_policy_revision_info": "gauge",
        "regogate_audit_records": "counter",
    }.items():
        assert types.get(name) == kind, (name, types.get(name))
    req = "regogate_requests_total"
    assert _value(fam, "regogate_requests", req, api="chat.completions", model="mock-gpt",
                  decision="allow", status="200") == 2
    assert _value(fam, "regogate_requests", req, model="mock-gpt-admin", decision="deny",
                  status="403") == 1
    assert _value(fam, "regogate_requests", req, status="401", decision="none") == 1
    # The typo'd model name is no label value: one "none" series, not one per typo.
    assert not any(s.labels.get("model") == "mock-gtp" for s in fam["regogate_requests"].samples)
    assert _value(fam, "regogate_client_errors", "regogate_client_errors_total",
                  code="model_not_found") == 1
    assert _value(fam, "regogate_time_to_first_token_seconds",
                  "regogate_time_to_first_token_seconds_count", model="mock-gpt") == 1
    assert _value(fam, "regogate_policy_duration_seconds",
                  "regogate_policy_duration_seconds_count", engine="embedded") >= 3
    assert _value(fam, "regogate_tokens", "regogate_tokens_total", model="mock-gpt",
                  kind="completion") > 0
    assert _value(fam, "regogate_audit_write_duration_seconds",
                  "regogate_audit_write_duration_seconds_count", event="request.intent") == 2
    assert _value(fam, "regogate_jwks_fetches", "regogate_jwks_fetches_total") >= 1
    assert _value(fam, "regogate_circuit_breaker_open", "regogate_circuit_breaker_open",
                  model="mock-gpt") == 0
    assert "regogate_internal_errors_total" not in {
        s.name for f in fam.values() for s in f.samples if s.value}


async def test_a_provider_400_for_the_clients_mistake_is_a_client_error_not_upstream(
    tmp_path: Path,
) -> None:
    body = b'{"error":{"message":"Unrecognized request argument: temprature",' \
           b'"type":"invalid_request_error","code":null}}'

    def answer(_: Recorded) -> Reply:
        return Reply(400, body, {"content-type": "application/json"})

    config = {"providers": {"up": {"kind": "openai", "base_url": "", "api_key": "sk-test-xx"}},
              "models": {"mock-gpt": {"provider": "up", "model": "gpt-upstream"}}}
    async with FakeServer(answer) as fake:
        config["providers"]["up"]["base_url"] = fake.url + "/v1"
        async with running_gateway(tmp_path, config=config) as gw:
            with pytest.raises(openai.BadRequestError):
                await gw.openai("alice").chat.completions.create(model="mock-gpt",
                                                                 messages=HELLO)
            _, fam = await _scrape(gw.url)
    assert _value(fam, "regogate_client_errors", "regogate_client_errors_total") == 1
    assert _value(fam, "regogate_upstream_errors", "regogate_upstream_errors_total") == 0
    assert _value(fam, "regogate_requests", "regogate_requests_total", status="400") == 1


def test_every_metric_the_code_records_is_declared_with_its_kind() -> None:
    calls = re.compile(r"(?:\.|metrics_)(inc|observe|set)\(\s*\"([a-z0-9_]+)\"")
    kind_of = {"inc": "counter", "observe": "histogram", "set": "gauge"}
    undeclared = []
    for path in [*ROOT.joinpath("pep").rglob("*.py"), *ROOT.joinpath("adapters").rglob("*.py")]:
        for method, name in calls.findall(path.read_text()):
            spec = CATALOGUE.get(name)
            if spec is None or spec[0] != kind_of[method]:
                undeclared.append(f"{path.relative_to(ROOT)}: {method}({name!r})")
    assert not undeclared


def test_an_undeclared_metric_fails_loudly_in_strict_mode_and_is_counted_otherwise() -> None:
    with pytest.raises(MetricsMisuse, match="not declared"):
        Metrics(strict=True).inc("no_such_total")
    with pytest.raises(MetricsMisuse, match="labels"):
        Metrics(strict=True).inc("auth_failures_total", reason="x")
    relaxed = Metrics(strict=False)
    relaxed.inc("no_such_total")  # production: never a failed request
    assert relaxed.get("metrics_misuse_total") == 1
    assert metrics_mod.PREFIX == "regogate_"


async def test_a_client_closing_a_csv_export_early_is_a_disconnect_not_an_internal_error(
    tmp_path: Path,
) -> None:
    import asyncio
    import socket
    import struct

    from pep import appkeys
    from pep.auditing import event
    from pep.exchange import Exchange

    async with running_gateway(tmp_path) as gw:
        store = gw.app[appkeys.AUDIT]
        await asyncio.gather(*(store.append(event("request.error", Exchange(
            f"req_{i:06d}", "POST", "/v1/chat/completions", "127.0.0.1"))) for i in range(4000)))
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /audit/v1/export.csv HTTP/1.1\r\nHost: x\r\n"
                     f"Authorization: Bearer {gw.token('erin')}\r\n\r\n".encode())
        await writer.drain()
        assert b"200 OK" in await reader.read(4096)
        # Close with RST (linger 0): the gateway's next writes fail.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
        metrics = gw.app[appkeys.METRICS]
        for _ in range(400):  # a hang guard, not a timing claim
            if metrics.get("client_disconnects_total"):
                break
            await asyncio.sleep(0.025)
        assert metrics.get("client_disconnects_total") == 1
        assert metrics.get("internal_errors_total") == 0
