from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from pep.usage.windows import WINDOWS, WindowClock, seconds_until_reset, window_bounds


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_minute_window_starts_on_the_minute() -> None:
    assert window_bounds("minute", ts(2025, 3, 14, 15, 9, 26)) == (
        ts(2025, 3, 14, 15, 9), ts(2025, 3, 14, 15, 10))


def test_hour_window_starts_on_the_hour() -> None:
    assert window_bounds("hour", ts(2025, 3, 14, 15, 9, 26)) == (
        ts(2025, 3, 14, 15), ts(2025, 3, 14, 16))


def test_day_window_is_the_utc_calendar_day() -> None:
    assert window_bounds("day", ts(2025, 3, 14, 23, 59, 59)) == (ts(2025, 3, 14), ts(2025, 3, 15))


def test_month_window_spans_a_leap_february() -> None:
    start, end = window_bounds("month", ts(2024, 2, 10))
    assert (start, end) == (ts(2024, 2, 1), ts(2024, 3, 1))
    assert end - start == 29 * 86400


def test_december_window_ends_at_new_year() -> None:
    assert window_bounds("month", ts(2024, 12, 31, 23)) == (ts(2024, 12, 1), ts(2025, 1, 1))


def test_instant_on_a_boundary_belongs_to_the_new_window() -> None:
    assert window_bounds("day", ts(2025, 3, 15))[0] == ts(2025, 3, 15)


def test_retry_after_counts_up_to_the_window_end_rounded_up() -> None:
    now = ts(2025, 3, 14, 15, 9, 10) + 0.5
    assert seconds_until_reset("minute", now) == 50
    assert seconds_until_reset("day", now) == int(ts(2025, 3, 15) - now) + 1


def test_retry_after_is_at_least_one_second() -> None:
    assert seconds_until_reset("minute", ts(2025, 3, 14, 15, 9, 59) + 0.9999) == 1


def test_month_retry_after_reaches_the_first_of_next_month() -> None:
    assert seconds_until_reset("month", ts(2025, 3, 31, 12)) == 12 * 3600


def test_unknown_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="week"):
        window_bounds("week", 0)


def test_window_clock_recomputes_after_rollover() -> None:
    clock = WindowClock()
    first = clock.bounds(ts(2025, 3, 14, 15, 9, 30))
    assert clock.bounds(ts(2025, 3, 14, 15, 9, 59)) is first
    later = clock.bounds(ts(2025, 3, 14, 15, 10, 1))
    assert later["minute"] == (ts(2025, 3, 14, 15, 10), ts(2025, 3, 14, 15, 11))
    assert later["day"] == first["day"]


def test_window_clock_bounds_always_contain_now() -> None:
    clock = WindowClock()
    rng = random.Random(5)
    t = ts(2025, 12, 31, 23, 58)
    for _ in range(3000):  # across minute, hour, day, month and year boundaries, and back
        t += rng.choice([0.25, 1, 7, 59.5, 3600, -30, -3600 * 30, 86400 * 3])
        bounds = clock.bounds(t)
        assert bounds == {w: window_bounds(w, t) for w in WINDOWS}, t
