"""Upstream pressure through the running gateway: a provider's long Retry-After is not
retried in place, and an exhausted connection pool answers 503 + Retry-After without
forwarding, without a provider timeout and without opening the circuit breaker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.fakes.openai_wire import reply, stream_reply
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import Gateway, error_body, running_gateway

ASK = [{"role": "user", "content": "hello"}]
LIMITED = b'{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}'


def one_provider(fake: FakeServer, **settings: Any) -> dict[str, Any]:
    return {"providers": {"up": {"kind": "openai", "base_url": fake.url + "/v1",
                                 "api_key": "sk-test-not-a-real-key", **settings}},
            "models": {"mock-gpt": {"provider": "up", "model": "gpt-upstream"}}}


async def eventually(check: Any, limit: int = 400) -> bool:
    """Poll (bounded: a hang guard, not a timing claim)."""
    for _ in range(limit):
        if check():
            return True
        await asyncio.sleep(0.025)
    return False


@pytest.mark.parametrize(("retry_after", "expected_requests"), [
    ({"retry-after": "30"}, 1),  # longer than max_retry_wait_s: not retried in place
    ({"retry-after-ms": "10"}, 2),  # short: honoured, then retried once
])
async def test_retry_after_beyond_the_wait_bound_is_not_retried(
    tmp_path: Path, retry_after: dict[str, str], expected_requests: int
) -> None:
    def answer(_: Recorded) -> Reply:
        return Reply(429, LIMITED, {"content-type": "application/json", **retry_after})

    async with FakeServer(answer) as fake, running_gateway(
            tmp_path, config=one_provider(fake, max_retries=1, max_retry_wait_s=2)) as gw:
        with pytest.raises(openai.RateLimitError) as info:
            await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=ASK)
        events = await gw.audit_records()
    assert len(fake.requests) == expected_requests
    assert error_body(info.value)["code"] == "upstream_rate_limited"
    if "retry-after" in retry_after:
        assert info.value.response.headers["retry-after"] == "30"  # passed on to the client
    (failure,) = [e for e in events if e["event"] == "upstream.error"]
    assert failure["outcome"]["status"] == 429
    # The router's RouteFailed names the deployment that refused; the audit records it.
    assert failure["what"]["deployment"] == "up/gpt-upstream"


async def _metrics(gw: Gateway) -> str:
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        return await r.text()


async def test_exhausted_pool_is_a_503_that_never_opens_the_breaker(tmp_path: Path) -> None:
    gate = asyncio.Event()
    replies = [stream_reply(["held", " open"])]
    replies[0].gate = gate  # the stream's connection stays busy until the gate opens

    def answer(_: Recorded) -> Reply:
        return replies.pop(0) if replies else reply("Hello again.")

    # One connection; a single provider failure would open the breaker for a minute.
    async with FakeServer(answer) as fake:
        config = one_provider(fake, max_connections=1, pool_timeout_s=0.2, max_retries=0,
                              breaker_failures=1, breaker_cooldown_s=60)
        config["cache"] = {"enabled": False}  # the repeated request must reach the provider
        async with running_gateway(tmp_path, config=config) as gw:
            client = gw.openai("alice")
            stream = await client.chat.completions.create(model="mock-gpt", messages=ASK,
                                                          stream=True)
            assert await eventually(lambda: len(fake.requests) == 1)
            with pytest.raises(openai.APIStatusError) as info:
                await client.chat.completions.create(model="mock-gpt", messages=ASK)
            busy_requests = len(fake.requests)
            gate.set()
            text = "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])
            # The provider was healthy all along: the next request is served, not skipped.
            after = await client.chat.completions.create(model="mock-gpt", messages=ASK)
            metrics = await _metrics(gw)
            events = await gw.audit_records()
    assert info.value.status_code == 503
    assert error_body(info.value)["code"] == "upstream_pool_exhausted"
    assert info.value.response.headers["retry-after"] == "1"
    assert busy_requests == 1  # nothing was forwarded for the refused request
    assert text == "held open"
    assert after.choices[0].message.content == "Hello again."
    assert len(fake.requests) == 2
    assert 'regogate_upstream_errors_total{code="upstream_pool_exhausted"} 1' in metrics
    refused = [e for e in events if e["event"] == "upstream.error"]
    assert len(refused) == 1 and refused[0]["outcome"]["status"] == 503
