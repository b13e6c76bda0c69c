"""Atomic check-and-reserve (pep/usage/admission.py), on the memory store and the real Redis:
N concurrent admissions against a limit of L admit exactly L."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pep.policy.contract import QuotaLimit
from pep.principal import Principal
from pep.usage.admission import InvalidQuota, QuotaExceeded, Reservation, message, resolve
from pep.usage.counters import _RESOLVED_MAX, CounterTracker
from pep.usage.memory import MemoryTracker
from pep.usage.settings import UsageSettings
from tests.usage.conftest import Clock, TrackerFactory

BOB = Principal(sub="bob", issuer="https://idp", teams=("research",))
RITA = Principal(sub="rita", issuer="https://idp", teams=("research",))


def limit(metric: str, value: float, *, scope: str = "user", key: str = "bob",
          window: str = "day", **extra: Any) -> QuotaLimit:
    return QuotaLimit(scope=scope, key=key, window=window, metric=metric, limit=value,
                      code=f"quota_{metric}_per_{window}", name=f"{metric} limit", **extra)


async def admit_many(tracker: CounterTracker, n: int, limits: list[QuotaLimit], *,
                     who: Principal = BOB, prompt: int = 10, out: int = 20,
                     ) -> tuple[list[Reservation], list[QuotaExceeded]]:
    results = await asyncio.gather(
        *(tracker.reserve(who, None, "mock-gpt", limits, prompt_tokens=prompt, output_tokens=out)
          for _ in range(n)),
        return_exceptions=True)
    ok = [r for r in results if isinstance(r, Reservation)]
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(ok) + len(refused) == n, results
    return ok, refused


async def test_concurrent_admissions_admit_exactly_the_request_limit(
    tracker: CounterTracker,
) -> None:
    ok, refused = await admit_many(tracker, 50, [limit("requests", 17)])
    assert (len(ok), len(refused)) == (17, 33)
    assert {f.code for e in refused for f, _ in e.failures} == {"quota_requests_per_day"}
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["requests"] == 17


async def test_concurrent_admissions_admit_exactly_the_token_limit(
    tracker: CounterTracker,
) -> None:
    # Each admission reserves its prompt and its whole max_tokens: 10 + 20 tokens.
    ok, refused = await admit_many(tracker, 40, [limit("tokens", 12 * 30, shrink=False)])
    assert (len(ok), len(refused)) == (12, 28)
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["tokens"] == 360


async def test_concurrent_admissions_admit_exactly_the_cost_limit(
    tracker: CounterTracker,
) -> None:
    # mock-gpt costs 3 / 15 USD per 1M tokens: 10 * 3000 + 20 * 15000 nano-USD = 330 micro-USD.
    ok, refused = await admit_many(tracker, 40, [limit("cost_usd", 9 * 0.00033)])
    assert (len(ok), len(refused)) == (9, 31)
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["month"]["cost_usd"] == pytest.approx(9 * 0.00033)


async def test_a_team_limit_counts_every_members_requests_in_flight(
    tracker: CounterTracker,
) -> None:
    team = limit("requests", 5, scope="team", key="research")
    # rita is named by no limit, but her requests in flight count toward the team.
    await admit_many(tracker, 3, [], who=RITA)
    ok, refused = await admit_many(tracker, 10, [team])
    assert (len(ok), len(refused)) == (2, 8)


async def test_a_shrinking_token_limit_gives_the_last_request_what_is_left(
    tracker: CounterTracker,
) -> None:
    day = [limit("tokens", 100)]
    first = await tracker.reserve(BOB, None, "mock-gpt", day, prompt_tokens=10, output_tokens=50)
    assert first.output_cap == 50
    second = await tracker.reserve(BOB, None, "mock-gpt", day, prompt_tokens=10,
                                   output_tokens=50)
    assert second.output_cap == 30  # 100 - 60 reserved - 10 prompt
    with pytest.raises(QuotaExceeded) as info:
        await tracker.reserve(BOB, None, "mock-gpt", day, prompt_tokens=1, output_tokens=50)
    [(refused_by, used)] = info.value.failures
    assert refused_by.code == "quota_tokens_per_day" and used == 100


async def test_shrink_divides_what_is_left_between_the_choices(tracker: CounterTracker) -> None:
    r = await tracker.reserve(BOB, None, "mock-gpt", [limit("completion_tokens", 100)],
                              prompt_tokens=5, output_tokens=80, choices=3)
    assert r.output_cap == 33
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["completion_tokens"] == 99


async def test_a_prompt_that_fills_what_is_left_exactly_is_refused_when_shrinking(
    tracker: CounterTracker,
) -> None:
    with pytest.raises(QuotaExceeded):
        await tracker.reserve(BOB, None, "mock-gpt", [limit("tokens", 10)], prompt_tokens=10,
                              output_tokens=5)
    # ...while a soft limit lets it through (the answer may finish past the limit).
    r = await tracker.reserve(BOB, None, "mock-gpt", [limit("tokens", 10, shrink=False)],
                              prompt_tokens=10, output_tokens=5)
    assert r.output_cap is None


@pytest.mark.parametrize("metric", ["tokens", "prompt_tokens"])
async def test_a_prompt_that_would_overshoot_is_refused(
    tracker: CounterTracker, metric: str
) -> None:
    with pytest.raises(QuotaExceeded):
        await tracker.reserve(BOB, None, "mock-gpt", [limit(metric, 10, shrink=False)],
                              prompt_tokens=11, output_tokens=0)


async def test_a_refused_admission_reserves_nothing(tracker: CounterTracker) -> None:
    limits = [limit("requests", 1), limit("tokens", 1000, window="month")]
    await tracker.reserve(BOB, "app", "mock-gpt", limits, prompt_tokens=10, output_tokens=10)
    with pytest.raises(QuotaExceeded) as info:
        await tracker.reserve(BOB, "app", "mock-gpt", limits, prompt_tokens=10, output_tokens=10)
    assert [f.code for f, _ in info.value.failures] == ["quota_requests_per_day"]
    snap = await tracker.snapshot(BOB, "app")
    for doc in (snap["user"], snap["team"], snap["client"]):
        assert doc["month"]["requests"] == 1 and doc["month"]["tokens"] == 20


async def test_every_failing_limit_is_reported(tracker: CounterTracker) -> None:
    limits = [limit("requests", 0, window="minute"), limit("requests", 0, window="month")]
    with pytest.raises(QuotaExceeded) as info:
        await tracker.reserve(BOB, None, "mock-gpt", limits, prompt_tokens=1, output_tokens=1)
    assert [f.window for f, _ in info.value.failures] == ["minute", "month"]


async def test_settle_replaces_the_reservation_by_the_real_usage(
    tracker: CounterTracker,
) -> None:
    r = await tracker.reserve(BOB, "app", "mock-gpt", [limit("tokens", 1000)],
                              prompt_tokens=10, output_tokens=500)
    assert (await tracker.snapshot(BOB, "app"))["user"]["day"]["tokens"] == 510
    cost = await tracker.settle(r, "mock-gpt", 12, 7, estimated=True)
    assert cost == pytest.approx((12 * 3 + 7 * 15) / 1e6)
    snap = await tracker.snapshot(BOB, "app")
    for doc in (snap["user"], snap["team"], snap["client"]):
        assert (doc["day"]["requests"], doc["day"]["prompt_tokens"],
                doc["day"]["completion_tokens"]) == (1, 12, 7)
        assert doc["day"]["cost_usd"] == pytest.approx(cost)
    assert snap["estimated"] is True
    await tracker.settle(r, "mock-gpt", 12, 7, estimated=True)  # once only
    assert (await tracker.snapshot(BOB, "app"))["user"]["day"]["tokens"] == 19


async def test_release_gives_the_whole_reservation_back(tracker: CounterTracker) -> None:
    limits = [limit("requests", 1)]
    r = await tracker.reserve(BOB, None, "mock-gpt", limits, prompt_tokens=10, output_tokens=5)
    await tracker.release(r)
    snap = await tracker.snapshot(BOB, None)
    assert (snap["user"]["day"]["requests"], snap["user"]["day"]["tokens"]) == (0, 0)
    assert snap["user"]["day"]["cost_usd"] == 0
    await tracker.reserve(BOB, None, "mock-gpt", limits, prompt_tokens=10, output_tokens=5)


async def test_settling_after_a_rollover_does_not_revive_the_old_window(
    tracker: CounterTracker, clock: Clock
) -> None:
    r = await tracker.reserve(BOB, None, "mock-gpt", [], prompt_tokens=10, output_tokens=100)
    clock.now += 60
    await tracker.settle(r, "mock-gpt", 10, 3, estimated=False)
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["minute"]["tokens"] == 0
    assert snap["user"]["hour"]["tokens"] == 13  # usage stays in the windows it was admitted in
    assert [row["window"] for row in await tracker.counters(scope="user")] == [
        "hour", "day", "month"]


async def test_a_limit_on_a_counter_the_request_does_not_add_to_is_invalid(
    tracker: CounterTracker,
) -> None:
    with pytest.raises(InvalidQuota):
        await tracker.reserve(BOB, None, "mock-gpt", [limit("requests", 5, key="alice")],
                              prompt_tokens=1, output_tokens=1)
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["requests"] == 0


@pytest.mark.parametrize("metric, value, admitted", [
    ("requests", 2.5, 3),          # used >= 2.5 only from the third reservation on
    ("prompt_tokens", 35, 3),      # 10 each: a fourth would overshoot 35
    ("completion_tokens", 41, 3),  # 20 each, soft: refused once 41 is reached (used 60)
    ("cost_usd", 0.00066, 2),      # 330 micro-USD each
])
async def test_both_stores_apply_the_same_comparisons(
    tracker: CounterTracker, metric: str, value: float, admitted: int
) -> None:
    ok, _ = await admit_many(tracker, 6, [limit(metric, value, shrink=False)])
    assert len(ok) == admitted


def test_the_refusal_message_is_the_policys() -> None:
    assert message(limit("requests", 60, window="minute"), 60) == (
        'quota "requests limit" reached: 60 of 60 requests per minute (user)')
    assert message(limit("cost_usd", 0.5, window="month"), 0.5) == (
        'quota "cost_usd limit" reached: 0.5 of 0.5 cost_usd per month (user)')


@pytest.mark.redis
async def test_replicas_on_one_redis_admit_exactly_the_limit_together(
    make_redis_tracker: TrackerFactory,
) -> None:
    replicas = [await make_redis_tracker() for _ in range(3)]
    limits = [limit("requests", 20), limit("tokens", 10_000, window="month")]
    results = await asyncio.gather(
        *(t.reserve(BOB, None, "mock-gpt", limits, prompt_tokens=10, output_tokens=20)
          for t in replicas for _ in range(30)),
        return_exceptions=True)
    assert sum(isinstance(r, Reservation) for r in results) == 20
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 70
    snap = await replicas[0].snapshot(BOB, None)
    assert snap["user"]["day"]["requests"] == 20 and snap["team"]["month"]["tokens"] == 600


@pytest.mark.redis
async def test_a_redis_admission_is_one_evalsha_round_trip(
    make_redis_tracker: TrackerFactory, redis_url: str, redis_prefix: str
) -> None:
    import redis.asyncio as aioredis

    t = await make_redis_tracker()
    limits = [limit("requests", 100), limit("tokens", 10_000, window="month")]
    await t.reserve(BOB, "app", "mock-gpt", limits, prompt_tokens=1, output_tokens=1)  # loads it
    watcher, probe = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    sentinel = f"{redis_prefix}sentinel"
    seen: list[str] = []
    try:
        async with watcher.monitor() as m, asyncio.timeout(30):
            await probe.ping()
            await t.reserve(BOB, "app", "mock-gpt", limits, prompt_tokens=1, output_tokens=1)
            await probe.get(sentinel)  # MONITOR reports in execution order: this comes last
            while True:
                info = await m.next_command()
                command = info["command"]
                if sentinel in command:
                    break
                # (MONITOR also shows the commands the script runs, as client "lua")
                if redis_prefix in command and info.get("client_type") != "lua":
                    seen.append(command.split(" ", 1)[0])
    finally:
        await watcher.aclose()
        await probe.aclose()
    assert seen == ["EVALSHA"]


async def test_a_reservation_reports_each_limits_counter_before_it(
    tracker: CounterTracker,
) -> None:
    """What threshold events compare (pep/usage/thresholds.py), the same on both stores."""
    limits = [limit("requests", 10), limit("tokens", 1000), limit("cost_usd", 5.0)]
    first = await tracker.reserve(BOB, None, "mock-gpt", limits, prompt_tokens=10,
                                  output_tokens=50)
    second = await tracker.reserve(BOB, None, "mock-gpt", limits, prompt_tokens=20,
                                   output_tokens=30)
    assert first.used_before == (0, 0, 0)
    # mock-gpt: $3 / $15 per million tokens -> 10 * 3000 + 50 * 15000 nano-USD
    assert second.used_before == (1, 60, 10 * 3000 + 50 * 15000)


async def test_one_limits_list_reused_by_many_requests_is_enforced_for_each_caller(
    tracker: CounterTracker,
) -> None:
    # The decision memo hands every request with the same decision the same list object.
    shared = [limit("requests", 3, key="research", scope="team")]
    for who in (BOB, RITA, BOB):
        await tracker.reserve(who, None, "mock-gpt", shared, prompt_tokens=1, output_tokens=1)
        assert tracker._checks(shared, [("user", who.sub), ("team", "research")], True) == \
            resolve(shared, [("user", who.sub), ("team", "research")], shrinkable=True)
    with pytest.raises(QuotaExceeded):  # the team's fourth request, whoever sends it
        await tracker.reserve(RITA, None, "mock-gpt", shared, prompt_tokens=1, output_tokens=1)
    # Another list (other limits, same caller) is resolved afresh, never served the first.
    other = [limit("requests", 2, key="rita")]  # rita has one request so far
    await tracker.reserve(RITA, None, "mock-gpt", other, prompt_tokens=1, output_tokens=1)
    with pytest.raises(QuotaExceeded):
        await tracker.reserve(RITA, None, "mock-gpt", other, prompt_tokens=1, output_tokens=1)


async def test_an_invalid_limits_list_is_refused_every_time(tracker: CounterTracker) -> None:
    bad = [limit("requests", 5, key="alice")]
    for _ in range(3):
        with pytest.raises(InvalidQuota):
            await tracker.reserve(BOB, None, "mock-gpt", bad, prompt_tokens=1, output_tokens=1)


def test_resolved_checks_are_kept_for_a_bounded_number_of_lists() -> None:
    tracker = MemoryTracker(UsageSettings())
    subs = [("user", "bob")]
    lists = [[limit("requests", n + 1)] for n in range(_RESOLVED_MAX + 40)]
    for limits in lists + lists[:10]:
        assert tracker._checks(limits, subs, True) == resolve(limits, subs, shrinkable=True)
    assert len(tracker._resolved) == _RESOLVED_MAX
