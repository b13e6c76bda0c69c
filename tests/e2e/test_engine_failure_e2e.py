"""GUIDE.md 3.15 at the gateway: an embedded-engine failure of any kind fails that one
request closed (503, audited, nothing forwarded) and leaves the next one healthy.

The Rust panic is real: regorus' native ``strings.count`` panics on an empty needle
("window size must be non-zero"). regogate overrides that builtin with an exact Python
version, so these tests drop the override to reach the native, panicking one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from pep.policy import builtins
from tests.e2e.conftest import upstream_config, write_bundle
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, error_body, running_gateway

HELLO = [{"role": "user", "content": "Hello"}]

# A prompt saying "panic" makes the decision call the panicking native builtin.
PANICKY = """package regogate

import rego.v1

decision := {"allow": true} if not contains(input.request.text, "panic")

decision := {"allow": strings.count(input.request.text, "") > 0} if {
	contains(input.request.text, "panic")
}
"""

ALWAYS_PANICS = """package regogate

import rego.v1

decision := {"allow": strings.count(input.request.model, "") > 0}
"""


@pytest.fixture
def native_strings_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(builtins.EXTENSIONS, "strings.count")


def _config(tmp_path: Path, upstream: FakeServer, rego: str) -> dict[str, Any]:
    bundle = write_bundle(tmp_path / "bundle", rego)
    return deep_merge(upstream_config(upstream), {"policy": {"bundle": str(bundle)}})


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.text()


async def test_a_panic_fails_that_request_closed_audited_and_the_next_request_is_fine(
    tmp_path: Path, upstream: FakeServer, native_strings_count: None
) -> None:
    async with running_gateway(tmp_path, config=_config(tmp_path, upstream, PANICKY)) as gw:
        client = gw.openai("bob")
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "panic now"}]
            )
        assert upstream.requests == []
        # The engine was rebuilt: later decisions are not "recursion detected" errors.
        for _ in range(3):
            ok = await client.chat.completions.create(model="mock-gpt", messages=HELLO)
            assert ok.choices[0].message.content == "Hello from the fake upstream."
        status, metrics = await _get(gw.url + "/metrics")
        ready, _ = await _get(gw.url + "/readyz")
        events = await gw.audit_records()
    assert info.value.status_code == 503
    assert error_body(info.value)["code"] == "policy_unavailable"
    assert error_body(info.value)["cause"] == "engine_failure"
    assert len(upstream.requests) == 3
    assert "regogate_policy_engine_failures_total 1" in metrics
    assert ready == 200  # one bad input does not make the engine unready
    refused = [e for e in events if e["event"] == "policy.error"]
    assert len(refused) == 1
    assert "window size must be non-zero" in str(refused[0])


async def test_readyz_reports_an_engine_that_cannot_evaluate(
    tmp_path: Path, upstream: FakeServer, native_strings_count: None
) -> None:
    config = _config(tmp_path, upstream, ALWAYS_PANICS)
    async with running_gateway(tmp_path, config=config) as gw:
        before, _ = await _get(gw.url + "/readyz")
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                await gw.openai("bob").chat.completions.create(model="mock-gpt", messages=HELLO)
        status, body = await _get(gw.url + "/readyz")
    assert before == 200  # no decision has failed yet
    assert status == 503
    assert "engine_error" in body and "window size must be non-zero" in body
    assert upstream.requests == []


async def test_a_builtin_error_is_undefined_as_in_opa_so_default_decides(
    tmp_path: Path, upstream: FakeServer
) -> None:
    # to_number("many") is a builtin error: OPA makes that expression undefined and the
    # default rule decides; the embedded engine used to fail the whole decision (503).
    rego = """package regogate

import rego.v1

default decision := {"allow": true}

decision := {"allow": false} if to_number(input.request.text) > 10
"""
    async with running_gateway(tmp_path, config=_config(tmp_path, upstream, rego)) as gw:
        ok = await gw.openai("bob").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "many"}]
        )
        with pytest.raises(openai.PermissionDeniedError):
            await gw.openai("bob").chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "11"}]
            )
    assert ok.choices[0].message.content == "Hello from the fake upstream."
