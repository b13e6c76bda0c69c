"""pep.timestamps writes exactly what the datetime expressions it replaced wrote."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import pytest

from pep.policy.input import time_doc
from pep.timestamps import from_float_seconds, now_rfc3339, rfc3339_ns

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _instants() -> list[int]:
    rng = random.Random(14)
    base = [
        0, 1, 999, 1000, 999_999_999, 1_000_000_000,
        1_764_633_599_999_999_999,  # the last ns of a day (2025-12-01)
        1_764_633_600_000_000_000,  # the first of the next
        1_709_164_800_000_000_000,  # 2024-02-29
        4_102_444_799_999_999_500,  # the end of 2099
        time.time_ns(),
    ]
    base += [rng.randrange(0, 4_102_444_800 * 10**9) for _ in range(3000)]
    # Near whole seconds and half microseconds, where rounding and carries happen.
    for _ in range(500):
        sec = rng.randrange(1_600_000_000, 2_000_000_000) * 10**9
        base += [sec - rng.randrange(0, 2000), sec + rng.randrange(0, 2000),
                 sec + rng.randrange(0, 10**6) * 1000 + 500]
    return base


@pytest.mark.parametrize("ns", _instants()[:40])
def test_rfc3339_ns_is_datetime_truncated_to_the_microsecond(ns: int) -> None:
    assert rfc3339_ns(ns) == _iso(_EPOCH + timedelta(microseconds=ns // 1000))


def test_rfc3339_ns_on_many_instants() -> None:
    for ns in _instants():
        assert rfc3339_ns(ns) == _iso(_EPOCH + timedelta(microseconds=ns // 1000)), ns


def test_from_float_seconds_rounds_as_datetime_fromtimestamp() -> None:
    for ns in _instants():
        t = ns / 1e9
        dt = datetime.fromtimestamp(t, tz=UTC)
        assert from_float_seconds(t) == (_iso(dt), dt.weekday(), dt.hour), ns


def test_time_doc_is_unchanged() -> None:
    for ns in _instants():
        dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
        assert time_doc(ns) == {"now_ns": ns, "rfc3339": _iso(dt),
                                "weekday": _WEEKDAYS[dt.weekday()], "hour": dt.hour}, ns


def test_now_rfc3339_is_the_current_time() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    text = now_rfc3339()
    after = datetime.now(UTC)
    assert text.endswith("Z") and len(text) == len("2026-12-01T23:44:00.123456Z")
    assert before <= datetime.fromisoformat(text) <= after
