"""UTC timestamps for the request path: the audit events' ``time`` and ``input.time``.

Formatting a ``datetime`` with ``isoformat(timespec="microseconds")`` costs about 4 us on
the benchmark machine, and the request path did it three times (two audit events and the
policy input). The date and time of day only change once a second, so the part down to the
second is formatted once per second (``_second``) and the microseconds are appended.
The strings are those ``datetime`` writes, character for character
(tests/test_timestamps.py holds both functions to the ``datetime`` expressions they
replace).
"""

from __future__ import annotations

import functools
import math
import time
from datetime import UTC, datetime


@functools.lru_cache(maxsize=4)
def _second(sec: int) -> tuple[str, int, int]:
    """("YYYY-MM-DDTHH:MM:SS", weekday (Monday 0), hour) of a whole UTC second."""
    dt = datetime.fromtimestamp(sec, tz=UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="seconds"), dt.weekday(), dt.hour


def rfc3339_ns(now_ns: int) -> str:
    """``now_ns`` (ns since the epoch) as RFC 3339 UTC with microseconds, truncated to the
    microsecond as ``datetime.now`` is: "2026-12-01T23:44:00.123456Z"."""
    sec, us = divmod(now_ns // 1000, 1_000_000)
    return f"{_second(sec)[0]}.{us:06d}Z"


def now_rfc3339() -> str:
    """``datetime.now(UTC).isoformat(timespec="microseconds")`` with ``Z`` for ``+00:00``."""
    return rfc3339_ns(time.time_ns())


def from_float_seconds(t: float) -> tuple[str, int, int]:
    """(RFC 3339 with microseconds, weekday, hour) of ``datetime.fromtimestamp(t, UTC)``:
    its rounding of a float to the microsecond (half to even, a carry into the next second)."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    sec = int(whole)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    elif us < 0:
        sec, us = sec - 1, us + 1_000_000
    text, weekday, hour = _second(sec)
    return f"{text}.{us:06d}Z", weekday, hour
