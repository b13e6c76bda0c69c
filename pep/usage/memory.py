"""In-process counters: the embedded default for a single gateway process.

No locks are needed: updates run on the event loop without an ``await`` in between, so each
record, and each admission's check-and-reserve, is atomic. Memory is bounded by the subjects active in the current windows: when a
window rolls over, its whole bucket is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pep.usage.admission import Check, fit, used_of
from pep.usage.counters import FIELDS, ZERO, Bounds, CounterTracker, Subject
from pep.usage.windows import WINDOWS

assert len(FIELDS) == 5, "_add_now and _adjust unroll the five counter fields"


class MemoryTracker(CounterTracker):
    kind = "memory"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # window -> (window start, {subject: row})
        self._buckets: dict[str, tuple[int, dict[Subject, list[int]]]] = {}

    def _bucket(self, window: str, start: int) -> dict[Subject, list[int]] | None:
        held = self._buckets.get(window)
        return held[1] if held is not None and held[0] == start else None

    async def _read(self, bounds: Bounds, subs: list[Subject]) -> list[Sequence[int]]:
        buckets = [self._bucket(w, bounds[w][0]) for w in WINDOWS]
        out: list[Sequence[int]] = []
        for subject in subs:
            for bucket in buckets:
                row = bucket.get(subject) if bucket is not None else None
                out.append(tuple(row) if row is not None else ZERO)
        return out

    async def _add(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...],
                   now: float) -> None:
        self._add_now(bounds, subs, delta)

    def _add_now(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...]) -> None:
        d0, d1, d2, d3, d4 = delta  # FIELDS, unrolled: this runs for every counter, twice a request
        for w in WINDOWS:
            start = bounds[w][0]
            bucket = self._bucket(w, start)
            if bucket is None:
                bucket = {}
                self._buckets[w] = (start, bucket)
            for subject in subs:
                row = bucket.get(subject)
                if row is None:
                    bucket[subject] = [d0, d1, d2, d3, d4]
                else:
                    row[0] += d0
                    row[1] += d1
                    row[2] += d2
                    row[3] += d3
                    row[4] += d4

    async def _reserve(self, bounds: Bounds, subs: list[Subject], checks: list[Check],
                       model: str, prompt: int, out: int, choices: int,
                       now: float) -> tuple[list[tuple[int, int]], int, int, list[int]]:
        # No await from here to the end: nothing else runs between the check and the add.
        buckets = [self._bucket(w, bounds[w][0]) for w in WINDOWS]
        rows: list[Sequence[int]] = []
        for subject in subs:
            for bucket in buckets:
                row = bucket.get(subject) if bucket is not None else None
                rows.append(row if row is not None else ZERO)
        failed, out = fit(rows, checks, prompt, out, choices)
        if failed:
            return failed, out, 0, []
        nanos = self.prices.cost_nanos(model, prompt, out * choices) or 0
        used = [used_of(rows[c.row], c.metric) for c in checks]
        self._add_now(bounds, subs, (1, prompt, out * choices, nanos, 0))
        return failed, out, nanos, used

    async def _adjust(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...]) -> None:
        d0, d1, d2, d3, d4 = delta
        for w in WINDOWS:
            bucket = self._bucket(w, bounds[w][0])
            if bucket is None:
                continue
            for subject in subs:
                row = bucket.get(subject)
                if row is not None:
                    row[0] += d0
                    row[1] += d1
                    row[2] += d2
                    row[3] += d3
                    row[4] += d4

    async def _list(self, bounds: Bounds, window: str,
                    scope: str | None) -> list[tuple[str, str, Sequence[int]]]:
        bucket = self._bucket(window, bounds[window][0]) or {}
        return [(s, i, tuple(row)) for (s, i), row in bucket.items() if scope in (None, s)]

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        return True, {"store": "memory"}
