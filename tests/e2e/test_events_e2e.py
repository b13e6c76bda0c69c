"""CloudEvents to a configured sink: a policy denial arrives as a signed, structured
CloudEvent; failed deliveries are retried; a stuck sink never holds a request up (its bounded
queue drops and counts instead)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from pep import appkeys
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import Gateway, running_gateway

HELLO = [{"role": "user", "content": "Hello"}]
SECRET = "sink-secret-for-tests"


def _events(sink: FakeServer, **over: Any) -> dict[str, Any]:
    return {"events": {"sinks": [{"name": "siem", "url": sink.url + "/hook", "secret": SECRET}],
                       "backoff_s": 0.01, **over}}


async def _until(check: Any) -> None:
    for _ in range(400):  # a hang guard, not a timing claim
        if check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition never became true")


async def _deny_bob(gw: Gateway) -> str:
    with pytest.raises(openai.PermissionDeniedError) as info:
        await gw.openai("bob").chat.completions.create(model="mock-gpt-admin", messages=HELLO)
    return str(info.value.response.headers["x-request-id"])


async def test_a_denial_reaches_the_sink_as_a_signed_cloudevent(tmp_path: Path) -> None:
    async with FakeServer(lambda _: Reply(202, b"")) as sink, running_gateway(
            tmp_path, config=_events(sink)) as gw:
        request_id = await _deny_bob(gw)
        await _until(lambda: sink.requests)
        metrics = gw.app[appkeys.METRICS]
        await _until(lambda: metrics.get("events_delivered_total", sink="siem") == 1)
    (got,) = sink.requests
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(got.headers["x-regogate-signature"], expected)
    ev = json.loads(got.body)
    assert ev["specversion"] == "1.0" and ev["type"] == "dev.regogate.policy.denied"
    assert ev["source"] == "urn:regogate" and ev["id"] and ev["time"]
    assert ev["subject"] == "bob"
    assert ev["data"]["request_id"] == request_id
    assert ev["data"]["model"] == "mock-gpt-admin" and ev["data"]["reasons"]
    assert "Hello" not in got.body.decode()  # no prompt text in events


async def test_a_failed_delivery_is_retried_and_a_hopeless_one_counted(tmp_path: Path) -> None:
    answers = [Reply(503, b""), Reply(500, b""), Reply(204, b"")]
    async with FakeServer(answers) as sink, running_gateway(
            tmp_path, config=_events(sink, max_attempts=3)) as gw:
        await _deny_bob(gw)
        metrics = gw.app[appkeys.METRICS]
        await _until(lambda: metrics.get("events_delivered_total", sink="siem") == 1)
        assert len(sink.requests) == 3
        # The same body each time (one event, not three).
        assert len({r.body for r in sink.requests}) == 1
        await _deny_bob(gw)  # the script is exhausted: every attempt now fails (500)
        await _until(lambda: metrics.get("events_failed_total", sink="siem") == 1)


async def test_a_stuck_sink_never_blocks_requests_and_overflow_is_counted(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()

    def stuck(_: Recorded) -> Reply:
        return Reply(204, b"", gate=gate)

    async with FakeServer(stuck) as sink, running_gateway(
            tmp_path, config=_events(sink, queue_size=1, timeout_s=30)) as gw:
        metrics = gw.app[appkeys.METRICS]
        await _deny_bob(gw)
        await _until(lambda: sink.requests)  # the worker holds event 1 at the stuck sink
        await _deny_bob(gw)  # queued (queue_size 1)
        await _deny_bob(gw)  # queue full: dropped, and the request was answered anyway
        assert metrics.get("events_dropped_total", sink="siem") == 1
        gate.set()
        await _until(lambda: metrics.get("events_delivered_total", sink="siem") == 2)


async def test_a_circuit_breaker_opening_is_an_event(tmp_path: Path) -> None:
    async with FakeServer(lambda _: Reply(202, b"")) as sink, \
            FakeServer(lambda _: Reply(500, b'{"error":{"message":"down"}}')) as provider:
        config = {**_events(sink),
                  "providers": {"up": {"kind": "openai", "base_url": provider.url + "/v1",
                                       "api_key": "sk-test-xx", "max_retries": 0,
                                       "breaker_failures": 1}},
                  "models": {"mock-gpt": {"provider": "up", "model": "gpt-upstream"}}}
        async with running_gateway(tmp_path, config=config) as gw:
            with pytest.raises(openai.InternalServerError):
                await gw.openai("alice").chat.completions.create(
                    model="mock-gpt", messages=HELLO)
            await _until(lambda: sink.requests)
    ev = json.loads(sink.requests[0].body)
    assert ev["type"] == "dev.regogate.circuit_breaker.opened"
    assert ev["data"] == {"provider": "up", "model": "mock-gpt"}


async def test_a_broken_audit_chain_found_by_verify_is_an_event(tmp_path: Path) -> None:
    import sqlite3

    import aiohttp

    async with FakeServer(lambda _: Reply(202, b"")) as sink, running_gateway(
            tmp_path, config=_events(sink)) as gw:
        await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        db = Path(str(gw.settings.audit.store).removeprefix("sqlite:///"))
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE audit_records SET body = replace(body, 'mock-gpt', 'mock-gpx')"
                         " WHERE seq = 1")
        async with aiohttp.ClientSession() as s, s.get(
                gw.url + "/audit/v1/verify",
                headers={"Authorization": f"Bearer {gw.token('erin')}"}) as r:
            assert not (await r.json())["valid"]
        await _until(lambda: any(b"integrity_failed" in q.body for q in sink.requests))
    ev = next(json.loads(q.body) for q in sink.requests if b"integrity_failed" in q.body)
    assert ev["type"] == "dev.regogate.audit.integrity_failed"
    assert ev["data"]["seq"] == 1 and ev["data"]["message"]


async def test_a_budget_reaching_80_and_100_percent_and_the_denial_after_are_signed_events(
    tmp_path: Path,
) -> None:
    """Five requests a day for contractors: the 4th reserves 80 %, the 5th 100 % (one
    quota.threshold each, signed), the 6th is refused (quota.exceeded)."""
    from tests.e2e.test_quotas_e2e import contractors, quota_bundle

    bundle = quota_bundle(tmp_path, contractors("requests", "day", 5))
    async with FakeServer(lambda _: Reply(202, b"")) as sink, running_gateway(
            tmp_path, config={**_events(sink), "policy": {"bundle": str(bundle)}}) as gw:
        bob = gw.openai("bob")
        ids = []
        for _ in range(5):
            resp = await bob.chat.completions.with_raw_response.create(
                model="mock-gpt", messages=HELLO)
            ids.append(resp.headers["x-request-id"])
        with pytest.raises(openai.RateLimitError) as info:
            await bob.chat.completions.create(model="mock-gpt", messages=HELLO)
        denied = info.value.response.headers["x-request-id"]
        await _until(lambda: len(sink.requests) == 3)
    for got in sink.requests:
        expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(got.headers["x-regogate-signature"], expected)
    events = [json.loads(r.body) for r in sink.requests]
    assert [e["type"] for e in events] == ["dev.regogate.quota.threshold"] * 2 + [
        "dev.regogate.quota.exceeded"]
    eighty, hundred, exceeded = events
    assert {k: eighty["data"][k] for k in ("percent", "scope", "key", "window", "metric",
                                          "limit", "used", "request_id")} == {
        "percent": 80, "scope": "user", "key": "bob", "window": "day", "metric": "requests",
        "limit": 5, "used": 4, "request_id": ids[3]}
    assert hundred["data"]["percent"] == 100 and hundred["data"]["used"] == 5
    assert hundred["data"]["request_id"] == ids[4] and hundred["subject"] == "bob"
    assert exceeded["data"]["request_id"] == denied
