"""Threshold crossings (pep/usage/thresholds.py): a reservation that carries a counter across
80 % or 100 % of its limit is reported once, in the limit's unit; one that starts above a
mark, or stays below it, is not."""

from __future__ import annotations

import pytest

from pep.policy.contract import QuotaLimit
from pep.usage.admission import Reservation
from pep.usage.pricing import NANOS_PER_USD
from pep.usage.thresholds import crossings


def _limit(metric: str, limit: float) -> QuotaLimit:
    return QuotaLimit(scope="team", key="research", window="month", metric=metric,
                      limit=limit, code=f"budget_{metric}")


def _reservation(delta: tuple[int, ...], *used: int) -> Reservation:
    return Reservation(bounds={}, subs=[], delta=delta, output_cap=None, used_before=used)


@pytest.mark.parametrize("before, reserved, percents", [
    (70, 5, []), (75, 5, [80]), (79, 30, [80, 100]), (80, 5, []), (95, 5, [100]),
    (100, 1, []), (0, 100, [80, 100]),
])
def test_a_token_budget_is_crossed_by_the_request_that_reaches_the_mark(
    before: int, reserved: int, percents: list[int]
) -> None:
    found = crossings([_limit("tokens", 100)], _reservation((1, reserved, 0, 0, 0), before))
    assert [c.percent for c in found] == percents
    assert all(c.used == before + reserved for c in found)


def test_a_cost_budget_compares_nano_usd_and_reports_usd() -> None:
    limit = _limit("cost_usd", 10.0)
    before, reserved = int(7.9 * NANOS_PER_USD), int(0.2 * NANOS_PER_USD)
    (crossed,) = crossings([limit], _reservation((1, 10, 10, reserved, 0), before))
    assert crossed.percent == 80 and crossed.used == pytest.approx(8.1)
    assert crossed.limit is limit


def test_each_limit_is_checked_against_its_own_counter() -> None:
    limits = [_limit("requests", 10), _limit("completion_tokens", 1000)]
    found = crossings(limits, _reservation((1, 50, 400, 0, 0), 7, 500))
    assert [(c.limit.metric, c.percent) for c in found] == [
        ("requests", 80), ("completion_tokens", 80)]


def test_a_reservation_without_counters_reports_nothing() -> None:
    assert crossings([_limit("requests", 10)], _reservation((1, 0, 0, 0, 0))) == []
