"""Redis-only behaviour: replicas sharing counts, atomicity, expiry, failure handling."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pep.principal import Principal
from pep.usage.redis_store import RedisTracker, redact_url
from pep.usage.settings import UsageSettings
from pep.usage.tracker import UsageUnavailable, open_tracker
from pep.usage.windows import window_bounds
from tests.conftest import redis_async
from tests.usage.conftest import PRICES, T0, TrackerFactory

pytestmark = pytest.mark.redis

BOB = Principal(sub="bob", issuer="https://idp", teams=("research",))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_two_replicas_on_one_redis_see_one_count(make_redis_tracker: TrackerFactory) -> None:
    a, b = await make_redis_tracker(), await make_redis_tracker()
    await a.record(BOB, "app", "mock-gpt", 100, 0, estimated=False)
    await b.record(BOB, "app", "mock-gpt", 50, 0, estimated=False)
    for t in (a, b):
        snap = await t.snapshot(BOB, "app")
        assert snap["user"]["day"]["tokens"] == 150
        assert snap["team"]["day"]["requests"] == 2
        assert snap["client"]["month"]["prompt_tokens"] == 150


async def test_concurrent_records_from_two_replicas_are_not_lost(
    make_redis_tracker: TrackerFactory,
) -> None:
    a, b = await make_redis_tracker(), await make_redis_tracker()
    await asyncio.gather(*(
        t.record(BOB, None, "mock-gpt", 3, 2, estimated=False) for t in (a, b) for _ in range(40)
    ))
    snap = await a.snapshot(BOB, None)
    assert snap["user"]["minute"]["requests"] == 80
    assert snap["user"]["minute"]["tokens"] == 400
    assert snap["user"]["minute"]["cost_usd"] == pytest.approx(80 * (3 * 3 + 2 * 15) / 1e6)


async def test_keys_expire_shortly_after_their_window(
    make_redis_tracker: TrackerFactory, redis_url: str, redis_prefix: str
) -> None:
    t = await make_redis_tracker()
    await t.record(BOB, None, "mock-gpt", 1, 1, estimated=False)
    client = redis_async(redis_url)
    try:
        for window in ("minute", "month"):
            start, end = window_bounds(window, T0)
            ttl = await client.ttl(f"{redis_prefix}{window}:{start}:user:bob")
            # Redis TTL counts down in whole seconds from when it was set.
            assert end - T0 < ttl <= end - T0 + 61
    finally:
        await client.aclose()


async def test_unreachable_redis_raises_usage_unavailable() -> None:
    t = open_tracker(UsageSettings(store=f"redis://127.0.0.1:{_closed_port()}/0", timeout_s=0.5))
    await t.start()
    try:
        with pytest.raises(UsageUnavailable):
            await t.snapshot(BOB, None)
    finally:
        await t.close()


async def test_failed_record_still_carries_the_cost_for_audit() -> None:
    t = open_tracker(UsageSettings(store=f"redis://127.0.0.1:{_closed_port()}/0", **PRICES))
    await t.start()
    try:
        with pytest.raises(UsageUnavailable) as info:
            await t.record(BOB, None, "mock-gpt", 1_000_000, 0, estimated=False)
        assert info.value.cost_usd == pytest.approx(3.0)
    finally:
        await t.close()


async def test_tracker_used_before_start_is_unavailable_not_a_crash() -> None:
    t = RedisTracker(UsageSettings(store="redis://127.0.0.1:6379/0"))
    with pytest.raises(UsageUnavailable):
        await t.snapshot(BOB, None)


async def test_readiness_of_unreachable_redis_hides_the_password() -> None:
    url = f"redis://gw:s3cret@127.0.0.1:{_closed_port()}/0"
    t = open_tracker(UsageSettings(store=url, timeout_s=0.5))
    await t.start()
    try:
        ok, detail = await t.ready()
    finally:
        await t.close()
    assert not ok
    assert "s3cret" not in repr(detail)
    assert detail["url"].startswith("redis://gw:***@127.0.0.1:")


def test_redact_url_leaves_passwordless_urls_alone() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_subject_ids_with_separators_and_globs_stay_distinct(
    make_redis_tracker: TrackerFactory,
) -> None:
    t = await make_redis_tracker()
    odd = Principal(sub="a:b*[x]", issuer="https://idp")
    await t.record(odd, None, "mock-gpt", 5, 0, estimated=False)
    rows = await t.counters(scope="user", window="day")
    assert [(r["id"], r["tokens"]) for r in rows] == [("a:b*[x]", 5)]
    assert (await t.snapshot(Principal(sub="a", issuer="i"), None))["user"]["day"]["tokens"] == 0
