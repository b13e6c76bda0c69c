"""Issue 7, end to end: quotas as policy through the whole gateway (real dev IdP tokens, the
embedded engine on the shipped policy library with test limits, the mock provider)."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml

from idp.testing import running_idp
from pep.defaults import repo_policies_dir
from pep.usage.windows import seconds_until_reset
from tests.conftest import drop_redis_prefix
from tests.harness import Gateway, error_body, running_gateway

PRICES = {"prices": {"mock-gpt": {"input_per_1m": 2.0, "output_per_1m": 8.0}}}
# 15 words: the mock counts words as tokens and answers with 9 words + the prompt.
LONG = [{"role": "user", "content": " ".join(f"word{i}" for i in range(15))}]
HELLO = [{"role": "user", "content": "Hello"}]


def quota_bundle(tmp_path: Path, limits: dict[str, Any]) -> Path:
    """The shipped policy library with policies/quota/limits/data.yaml replaced."""
    root = tmp_path / "policies"
    shutil.copytree(repo_policies_dir(), root)
    (root / "quota" / "limits" / "data.yaml").write_text(yaml.safe_dump(limits))
    return root


def contractors(metric: str, window: str, limit: float, **extra: Any) -> dict[str, Any]:
    return {"groups": {"contractors": [{"name": f"contractors {metric} per {window}",
                                        "scope": "user", "metric": metric, "window": window,
                                        "max": limit, **extra}]}}


async def counters(gw: Gateway, user: str, **query: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {gw.token(user)}"}
    async with aiohttp.ClientSession() as s, s.get(
        f"{gw.url}/usage/v1/counters", params=query, headers=headers
    ) as r:
        body = await r.json()
        assert r.status == 200, body
        return list(body["data"])


async def stream_text(client: Any, messages: list[dict[str, str]]) -> tuple[str, Any]:
    stream = await client.chat.completions.create(
        model="mock-gpt", messages=messages, stream=True, stream_options={"include_usage": True})
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    return text, usage


async def test_user_crossing_daily_tokens_mid_stream_gets_429_next_with_retry_after(
    tmp_path: Path,
) -> None:
    # shrink: false -- a soft limit: the answer in flight finishes past the limit.
    bundle = quota_bundle(tmp_path, contractors("tokens", "day", 30, shrink=False))
    async with running_gateway(tmp_path, config={"policy": {"bundle": str(bundle)}}) as gw:
        bob = gw.openai("bob")
        text, usage = await stream_text(bob, LONG)
        assert text.endswith("word14")  # not truncated
        # (bob is a contractor: the policy also prepends a system prompt, counted as prompt)
        assert usage.total_tokens > 30
        [row] = await counters(gw, "erin", scope="user", id="bob", window="day")
        assert row["tokens"] == usage.total_tokens
        before = time.time()
        with pytest.raises(openai.RateLimitError) as info:
            await bob.chat.completions.create(model="mock-gpt", messages=HELLO)
        after = time.time()
        err = info.value
        assert err.status_code == 429
        assert error_body(err)["code"] == "quota_tokens_per_day"
        assert error_body(err)["type"] == "rate_limit_error"
        retry = int(err.response.headers["Retry-After"])
        assert seconds_until_reset("day", after) <= retry <= seconds_until_reset("day", before)
        # Other users are not affected by bob's quota.
        ok = await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        assert ok.choices[0].message.content


async def test_token_limit_shrinks_the_answer_to_what_is_left_then_refuses(
    tmp_path: Path,
) -> None:
    bundle = quota_bundle(tmp_path, contractors("tokens", "day", 30))
    async with running_gateway(tmp_path, config={"policy": {"bundle": str(bundle)}}) as gw:
        bob = gw.openai("bob")
        first = await bob.chat.completions.create(model="mock-gpt", messages=LONG)
        assert first.choices[0].finish_reason == "length"
        assert first.usage is not None and first.usage.completion_tokens < 24
        with pytest.raises(openai.RateLimitError) as info:
            await bob.chat.completions.create(model="mock-gpt", messages=HELLO)
        assert error_body(info.value)["code"] == "quota_tokens_per_day"


async def test_team_budget_binds_a_member_with_a_larger_personal_limit(tmp_path: Path) -> None:
    limits = {
        "users": {"alice": [{"scope": "user", "metric": "requests", "window": "day", "max": 100}]},
        "teams": {"research": [{"scope": "team", "metric": "requests", "window": "day", "max": 2}]},
    }
    bundle = quota_bundle(tmp_path, limits)
    async with running_gateway(tmp_path, config={"policy": {"bundle": str(bundle)}}) as gw:
        alice = gw.openai("alice")
        for _ in range(2):
            await alice.chat.completions.create(model="mock-gpt", messages=HELLO)
        with pytest.raises(openai.RateLimitError) as info:
            await alice.chat.completions.create(model="mock-gpt", messages=HELLO)
        assert error_body(info.value)["code"] == "quota_requests_per_day"
        assert "(team)" in error_body(info.value)["message"]


async def test_usage_counters_agree_with_the_audit_cost_and_need_usage_read(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, config={"usage": PRICES}) as gw:
        alice = gw.openai("alice")
        await alice.chat.completions.create(model="mock-gpt", messages=LONG)
        await stream_text(alice, HELLO)
        [row] = await counters(gw, "erin", scope="user", id="alice", window="month")
        costs = [e["outcome"]["cost_usd"] for e in await gw.audit_records()
                 if e["event"] == "request.completion" and e["who"]["subject"] == "alice"]
        assert len(costs) == 2 and row["requests"] == 2
        assert row["cost_usd"] == pytest.approx(sum(costs), abs=1e-9)
        assert row["cost_usd"] > 0
        async with aiohttp.ClientSession() as s, s.get(
            f"{gw.url}/usage/v1/counters", headers={"Authorization": f"Bearer {gw.token('bob')}"}
        ) as r:
            assert r.status == 403


@pytest.fixture
def shared_redis(redis_url: str) -> Iterator[dict[str, Any]]:
    prefix = f"regogate-e2e:{uuid.uuid4().hex}:"
    yield {"store": redis_url, "key_prefix": prefix}
    drop_redis_prefix(redis_url, prefix)


@pytest.mark.redis
async def test_two_gateways_sharing_redis_enforce_one_combined_limit(
    tmp_path: Path, shared_redis: dict[str, Any]
) -> None:
    bundle = quota_bundle(tmp_path, contractors("requests", "day", 3))
    config = {"policy": {"bundle": str(bundle)}, "usage": shared_redis}
    async with (
        running_idp(tmp_path / "idp") as idp,
        running_gateway(tmp_path / "a", config=config, idp=idp) as a,
        running_gateway(tmp_path / "b", config=config, idp=idp) as b,
    ):
        for gw in (a, b, a):
            await gw.openai("bob").chat.completions.create(model="mock-gpt", messages=HELLO)
        for gw in (b, a):
            with pytest.raises(openai.RateLimitError) as info:
                await gw.openai("bob").chat.completions.create(model="mock-gpt", messages=HELLO)
            assert error_body(info.value)["code"] == "quota_requests_per_day"
        for gw in (a, b):
            [row] = await counters(gw, "erin", scope="user", id="bob", window="day")
            assert row["requests"] == 3
