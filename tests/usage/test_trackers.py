"""Counter behaviour, run on the memory store and on the real Redis."""

from __future__ import annotations

import pytest

from pep.policy.contract import QuotaRef
from pep.principal import Principal
from pep.usage.counters import CounterTracker, subjects, window_doc
from pep.usage.windows import WINDOWS
from tests.usage.conftest import Clock

ALICE = Principal(sub="alice", issuer="https://idp", teams=("research", "ml"))
BOB = Principal(sub="bob", issuer="https://idp", teams=("research",))


async def test_record_counts_user_team_and_client_in_every_window(tracker: CounterTracker) -> None:
    await tracker.record(BOB, "chat-ui", "mock-gpt", 100, 20, estimated=False)
    snap = await tracker.snapshot(BOB, "chat-ui")
    for doc in (snap["user"], snap["team"], snap["teams"]["research"], snap["client"]):
        for window in ("minute", "hour", "day", "month"):
            assert doc[window]["requests"] == 1
            assert doc[window]["prompt_tokens"] == 100
            assert doc[window]["completion_tokens"] == 20
            assert doc[window]["tokens"] == 120
    assert snap["team_name"] == "research"
    assert snap["client_id"] == "chat-ui"


async def test_record_returns_the_cost_and_counters_add_it(tracker: CounterTracker) -> None:
    cost = await tracker.record(BOB, None, "mock-gpt", 1000, 100, estimated=False)
    assert cost == pytest.approx(0.0045)
    await tracker.record(BOB, None, "mock-gpt", 1000, 100, estimated=False)
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["month"]["cost_usd"] == pytest.approx(0.009)


async def test_unpriced_model_counts_tokens_but_no_cost(tracker: CounterTracker) -> None:
    assert await tracker.record(BOB, None, "unpriced", 10, 10, estimated=False) is None
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["day"]["tokens"] == 20
    assert snap["user"]["day"]["cost_usd"] == 0


async def test_user_in_two_teams_counts_toward_both(tracker: CounterTracker) -> None:
    await tracker.record(ALICE, None, "mock-gpt", 5, 5, estimated=False)
    await tracker.record(BOB, None, "mock-gpt", 7, 0, estimated=False)
    snap = await tracker.snapshot(ALICE, None)
    assert snap["teams"]["research"]["day"]["tokens"] == 17
    assert snap["teams"]["ml"]["day"]["tokens"] == 10
    assert snap["team"] == snap["teams"]["research"]  # the first team, as input.user.team
    assert snap["user"]["day"]["tokens"] == 10


async def test_other_users_do_not_share_a_user_counter(tracker: CounterTracker) -> None:
    await tracker.record(ALICE, None, "mock-gpt", 5, 5, estimated=False)
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["day"]["requests"] == 0


async def test_counters_reset_when_their_window_rolls_over(
    tracker: CounterTracker, clock: Clock
) -> None:
    await tracker.record(BOB, None, "mock-gpt", 10, 0, estimated=False)
    clock.now += 60  # next minute, same hour/day/month
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["minute"]["tokens"] == 0
    assert snap["user"]["hour"]["tokens"] == 10
    assert snap["user"]["month"]["tokens"] == 10
    await tracker.record(BOB, None, "mock-gpt", 1, 0, estimated=False)
    snap = await tracker.snapshot(BOB, None)
    assert snap["user"]["minute"]["tokens"] == 1
    assert snap["user"]["day"]["tokens"] == 11


async def test_estimated_usage_is_marked_in_the_snapshot(tracker: CounterTracker) -> None:
    await tracker.record(BOB, None, "mock-gpt", 10, 0, estimated=False)
    assert (await tracker.snapshot(BOB, None))["estimated"] is False
    await tracker.record(BOB, None, "mock-gpt", 10, 0, estimated=True)
    assert (await tracker.snapshot(BOB, None))["estimated"] is True


async def test_negative_token_counts_never_refund_quota(tracker: CounterTracker) -> None:
    await tracker.record(BOB, None, "mock-gpt", 10, 0, estimated=False)
    await tracker.record(BOB, None, "mock-gpt", -100, -5, estimated=False)
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["tokens"] == 10


async def test_snapshot_is_a_copy_policy_cannot_change_the_store(tracker: CounterTracker) -> None:
    await tracker.record(BOB, None, "mock-gpt", 10, 0, estimated=False)
    (await tracker.snapshot(BOB, None))["user"]["day"]["tokens"] = 0
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["tokens"] == 10


async def test_snapshot_without_team_or_client_omits_them(tracker: CounterTracker) -> None:
    loner = Principal(sub="lone", issuer="https://idp")
    snap = await tracker.snapshot(loner, None)
    assert "team" not in snap and "client" not in snap
    assert snap["teams"] == {} and snap["team_name"] is None
    assert snap["user"]["minute"]["requests"] == 0


async def test_snapshot_reports_seconds_until_each_window_resets(tracker: CounterTracker) -> None:
    snap = await tracker.snapshot(BOB, None)
    # T0 is 15:09:26.5 UTC on 2025-03-14.
    assert snap["reset_s"]["minute"] == 34
    assert snap["reset_s"]["hour"] == 50 * 60 + 34


async def test_retry_after_uses_the_quota_window(tracker: CounterTracker) -> None:
    assert tracker.retry_after(QuotaRef(scope="user", window="minute")) == 34
    day = tracker.retry_after(QuotaRef(scope="team", window="day", metric="cost_usd"))
    assert day == (24 - 15) * 3600 - 9 * 60 - 26


async def test_counters_list_current_rows_by_scope_and_window(tracker: CounterTracker) -> None:
    await tracker.record(ALICE, "chat-ui", "mock-gpt", 3, 4, estimated=True)
    rows = await tracker.counters(window="day")
    assert [(r["scope"], r["id"]) for r in rows] == [
        ("user", "alice"), ("team", "ml"), ("team", "research"), ("client", "chat-ui")]
    assert all(r["tokens"] == 7 and r["estimated_requests"] == 1 for r in rows)
    teams = await tracker.counters(scope="team", window="month", ident="ml")
    assert [(r["id"], r["window"]) for r in teams] == [("ml", "month")]


async def test_counters_drop_rows_of_past_windows(tracker: CounterTracker, clock: Clock) -> None:
    await tracker.record(BOB, None, "mock-gpt", 1, 0, estimated=False)
    clock.now += 3600
    assert await tracker.counters(window="hour") == []
    assert len(await tracker.counters(window="day")) == 2  # user + team


async def test_ready_reports_ok(tracker: CounterTracker) -> None:
    ok, detail = await tracker.ready()
    assert ok and detail["store"] in ("memory", "redis")


async def test_snapshot_documents_are_window_doc_of_every_counter(tracker: CounterTracker,
                                                                  clock: Clock) -> None:
    await tracker.record(BOB, "chat-ui", "mock-gpt", 7, 3, estimated=False)
    clock.now += 3600  # the minute and hour rows start again, day and month keep counting
    await tracker.record(BOB, "chat-ui", "mock-gpt", 5, 1, estimated=False)
    snap = await tracker.snapshot(BOB, "chat-ui")
    subs = subjects(BOB, "chat-ui")
    rows = await tracker._read(tracker._windows.bounds(clock.now), subs)
    expected = {s: {w: window_doc(rows[i * len(WINDOWS) + j]) for j, w in enumerate(WINDOWS)}
                for i, s in enumerate(subs)}
    assert snap["user"] == expected[("user", BOB.sub)]
    assert snap["teams"] == {t: expected[("team", t)] for s, t in subs if s == "team"}
    assert snap["client"] == expected[("client", "chat-ui")]
    assert snap["user"]["hour"]["tokens"] == 6 and snap["user"]["month"]["tokens"] == 16


async def test_estimated_follows_the_month_counter(tracker: CounterTracker, clock: Clock) -> None:
    await tracker.record(BOB, None, "mock-gpt", 10, 0, estimated=True)
    clock.now += 2 * 86400  # a later day of the same month: only the month row still has it
    assert (await tracker.snapshot(BOB, None))["user"]["day"]["requests"] == 0
    assert (await tracker.snapshot(BOB, None))["estimated"] is True
    clock.now += 31 * 86400  # the next month
    assert (await tracker.snapshot(BOB, None))["estimated"] is False
