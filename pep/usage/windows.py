"""Fixed UTC counting windows: minute, hour, day, calendar month.

Fixed windows are exact and cost one counter per window; a sliding window is either
approximate (two-bucket interpolation) or costs a sorted set per subject. Windows nest
(minute within hour within day within month) because all are aligned to UTC, so a month
counter always contains the day counter. POSIX time has no leap seconds, so a UTC day is
exactly 86400 s here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

Window = Literal["minute", "hour", "day", "month"]
WINDOWS: tuple[Window, ...] = ("minute", "hour", "day", "month")
_FIXED = {"minute": 60, "hour": 3600, "day": 86400}


def window_bounds(window: str, now: float) -> tuple[int, int]:
    """[start, end) of the window containing ``now``, as Unix seconds."""
    t = math.floor(now)
    length = _FIXED.get(window)
    if length is not None:
        start = t - t % length
        return start, start + length
    if window != "month":
        raise ValueError(f"unknown window {window!r}")
    dt = datetime.fromtimestamp(t, UTC)
    start_dt = datetime(dt.year, dt.month, 1, tzinfo=UTC)
    end_dt = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=UTC)
    return int(start_dt.timestamp()), int(end_dt.timestamp())


def seconds_until_reset(window: str, now: float) -> int:
    """Whole seconds (rounded up, at least 1) until the window containing ``now`` ends: the
    Retry-After for a quota on that window, since capacity only returns at the boundary."""
    _, end = window_bounds(window, now)
    return max(1, math.ceil(end - now))


class WindowClock:
    """Current bounds of every window, recomputed only when a window rolls over, so the hot
    path does no calendar arithmetic."""

    __slots__ = ("_bounds", "_hi", "_lo")

    def __init__(self) -> None:
        self._bounds: dict[str, tuple[int, int]] = {}
        # Every window contains ``now`` exactly when the latest start <= now < earliest end.
        self._lo: float = 1.0
        self._hi: float = 0.0

    def bounds(self, now: float) -> dict[str, tuple[int, int]]:
        if self._lo <= now < self._hi:
            return self._bounds
        current: dict[str, tuple[int, int]] = {w: window_bounds(w, now) for w in WINDOWS}
        self._bounds = current
        self._lo = max(s for s, _ in current.values())
        self._hi = min(e for _, e in current.values())
        return current
