"""What is counted, for whom, and how the counters become ``input.usage``.

Every request adds to the counters of its subjects -- the user (``sub``), *each* of the
user's teams, and the calling app (``client_id``) -- in every window (minute, hour, day,
month): reserved at admission (``reserve``, checked atomically against the limits in effect,
pep/usage/admission.py), then ``settle``d to the real usage or ``release``d; ``record`` adds
usage that was never reserved. Stores only differ in how they read, check-and-add and add one
row of integers per (subject, window); this base class owns everything else so the memory
and Redis stores cannot disagree about the document policy sees (docs/usage.md).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from pep.policy.contract import QuotaLimit, QuotaRef
from pep.principal import Principal
from pep.usage.admission import Check, Reservation, failures, resolve
from pep.usage.pricing import NANOS_PER_USD, PriceTable
from pep.usage.settings import UsageSettings
from pep.usage.windows import WINDOWS, WindowClock, seconds_until_reset

# One stored row per (subject, window). Cost is integer nano-USD so that sums are exact.
FIELDS = ("requests", "prompt_tokens", "completion_tokens", "cost_nanos", "estimated_requests")
ZERO: tuple[int, ...] = (0,) * len(FIELDS)
SCOPES = ("user", "team", "client", "tool", "user_tool")

Subject = tuple[str, str]  # (scope, id)
_RESOLVED_MAX = 256
Bounds = dict[str, tuple[int, int]]  # window -> [start, end)


def subjects(principal: Principal, client_id: str | None) -> list[Subject]:
    out: list[Subject] = [("user", principal.sub)]
    out.extend(("team", team) for team in dict.fromkeys(principal.teams) if team)
    if client_id:
        out.append(("client", client_id))
    return out


def window_doc(row: Sequence[int]) -> dict[str, Any]:
    """The per-window figures policy sees (kept small: it is built on every request)."""
    requests, prompt, completion, nanos, _ = row
    return {
        "requests": requests,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "tokens": prompt + completion,
        "cost_usd": nanos / NANOS_PER_USD,
    }


def counter_row(scope: str, ident: str, window: str, bounds: tuple[int, int],
                row: Sequence[int]) -> dict[str, Any]:
    """One line of `regogate usage` / GET /usage/v1/counters."""
    return {"scope": scope, "id": ident, "window": window, "start": bounds[0],
            "end": bounds[1], **window_doc(row), "estimated_requests": row[4]}


class CounterTracker(ABC):
    """The UsageTracker protocol over an abstract row store."""

    kind = "abstract"  # "memory" | "redis": shown by /readyz and the usage API

    def __init__(self, settings: UsageSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.prices = PriceTable(settings)
        self._clock = clock
        self._windows = WindowClock()
        # resolve()'s checks by the identity of the limits list (see _checks).
        self._resolved: dict[tuple[int, tuple[Subject, ...], bool],
                             tuple[Sequence[QuotaLimit], list[Check]]] = {}

    # -- store primitives ------------------------------------------------------------------

    @abstractmethod
    async def _read(self, bounds: Bounds, subs: list[Subject]) -> list[Sequence[int]]:
        """Rows for every (subject, window), subject-major in WINDOWS order; ZERO if absent."""

    @abstractmethod
    async def _add(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...],
                   now: float) -> None:
        """Atomically add ``delta`` to the row of every (subject, window)."""

    @abstractmethod
    async def _reserve(self, bounds: Bounds, subs: list[Subject], checks: list[Check],
                       model: str, prompt: int, out: int, choices: int,
                       now: float) -> tuple[list[tuple[int, int]], int, int, list[int]]:
        """Atomically: ``admission.fit`` on the current rows; when nothing fails, add
        (1, prompt, out * choices, their cost, 0) to every row. Returns (failures, output
        tokens per choice reserved, nano-USD reserved, each check's counter before)."""

    @abstractmethod
    async def _adjust(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...]) -> None:
        """Add ``delta`` to the rows of ``bounds`` that still exist (a window that has rolled
        over since the reservation is gone, and stays gone)."""

    @abstractmethod
    async def _list(self, bounds: Bounds, window: str,
                    scope: str | None) -> list[tuple[str, str, Sequence[int]]]:
        """(scope, id, row) of every subject with a row in the current ``window``."""

    # -- protocol -------------------------------------------------------------------------

    @abstractmethod
    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """(ok, detail) for /readyz."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def snapshot(self, principal: Principal, client_id: str | None, *,
                       extra: Sequence[Subject] = ()) -> dict[str, Any]:
        """``extra``: more subjects (MCP's ("tool", ...), ("user_tool", ...)), each shown
        under its scope name."""
        now = self._clock()
        bounds = self._windows.bounds(now)
        subs = subjects(principal, client_id) + list(extra)
        rows = await self._read(bounds, subs)
        # window_doc inlined: 16 documents per request for a user with one team and an app.
        docs: dict[Subject, dict[str, Any]] = {}
        estimated = False
        at = 0
        for subject in subs:
            per_window: dict[str, Any] = {}
            for w in WINDOWS:
                requests, prompt, completion, nanos, est = rows[at]
                at += 1
                per_window[w] = {"requests": requests, "prompt_tokens": prompt,
                                 "completion_tokens": completion, "tokens": prompt + completion,
                                 "cost_usd": nanos / NANOS_PER_USD}
                # Any counted usage in this month came from an estimate, not the provider.
                if w == "month" and est:
                    estimated = True
            docs[subject] = per_window
        teams = {ident: doc for (scope, ident), doc in docs.items() if scope == "team"}
        doc: dict[str, Any] = {
            "user": docs[("user", principal.sub)],
            "teams": teams,
            "team_name": principal.team,
            "estimated": estimated,
            "reset_s": {w: max(1, math.ceil(end - now)) for w, (_, end) in bounds.items()},
            "unavailable": False,
        }
        if principal.team is not None:
            doc["team"] = teams[principal.team]
        if client_id:
            doc["client"] = docs[("client", client_id)]
            doc["client_id"] = client_id
        for subject in extra:
            doc[subject[0]] = docs[subject]
        return doc

    async def record(
        self,
        principal: Principal,
        client_id: str | None,
        model: str,
        tokens_in: int,
        tokens_out: int,
        *,
        estimated: bool,
    ) -> float | None:
        # Provider-reported numbers are input too: never let a negative count refund quota.
        tokens_in, tokens_out = max(0, int(tokens_in)), max(0, int(tokens_out))
        nanos = self.prices.cost_nanos(model, tokens_in, tokens_out)
        cost = None if nanos is None else nanos / NANOS_PER_USD
        now = self._clock()
        delta = (1, tokens_in, tokens_out, nanos or 0, 1 if estimated else 0)
        from pep.usage.tracker import UsageUnavailable

        try:
            await self._add(self._windows.bounds(now), subjects(principal, client_id), delta, now)
        except UsageUnavailable as exc:
            exc.cost_usd = cost  # the audit record still gets the cost
            raise
        return cost

    async def reserve(
        self,
        principal: Principal,
        client_id: str | None,
        model: str,
        limits: Sequence[QuotaLimit],
        *,
        prompt_tokens: int,
        output_tokens: int,
        choices: int = 1,
        shrinkable: bool = True,
        extra: Sequence[Subject] = (),
    ) -> Reservation:
        """Check ``limits`` and reserve this request on every counter, atomically (see
        pep/usage/admission.py). Raises QuotaExceeded, InvalidQuota or UsageUnavailable."""
        now = self._clock()
        bounds = self._windows.bounds(now)
        subs = subjects(principal, client_id) + list(extra)
        checks = self._checks(limits, subs, shrinkable)
        prompt, out, choices = max(0, prompt_tokens), max(0, output_tokens), max(1, choices)
        failed, fitted, nanos, used = await self._reserve(bounds, subs, checks, model, prompt,
                                                          out, choices, now)
        if failed:
            raise failures(limits, failed)
        # Under a shrinking token limit the output reserved is also the output allowed.
        shrinks = any(c.shrink for c in checks)
        return Reservation(bounds=bounds, subs=subs,
                           delta=(1, prompt, fitted * choices, nanos, 0),
                           output_cap=fitted if shrinks else None, used_before=tuple(used))

    def _checks(self, limits: Sequence[QuotaLimit], subs: list[Subject],
                shrinkable: bool) -> list[Check]:
        """``resolve``, memoised on the identity of ``limits``: the embedded engine's decision
        memo (pep/policy/validated.py) gives every request with the same decision document
        the same ``quota`` list, and nothing changes a decision in place. An entry holds its
        list, so the id cannot be reused while it is here; refusals are never kept."""
        if not limits:
            return []
        key = (id(limits), tuple(subs), shrinkable)
        hit = self._resolved.get(key)
        if hit is not None and hit[0] is limits:
            return list(hit[1])
        checks = resolve(limits, subs, shrinkable=shrinkable)
        if len(self._resolved) >= _RESOLVED_MAX:
            del self._resolved[next(iter(self._resolved))]
        self._resolved[key] = (limits, checks)
        return list(checks)

    async def settle(self, reservation: Reservation, model: str, tokens_in: int,
                     tokens_out: int, *, estimated: bool) -> float | None:
        """Replace the reservation by the real usage; returns the cost, like ``record``."""
        tokens_in, tokens_out = max(0, int(tokens_in)), max(0, int(tokens_out))
        nanos = self.prices.cost_nanos(model, tokens_in, tokens_out)
        cost = None if nanos is None else nanos / NANOS_PER_USD
        real = (1, tokens_in, tokens_out, nanos or 0, 1 if estimated else 0)
        from pep.usage.tracker import UsageUnavailable

        try:
            await self._close(reservation, real)
        except UsageUnavailable as exc:
            exc.cost_usd = cost
            raise
        return cost

    async def release(self, reservation: Reservation) -> None:
        """Give the whole reservation back: nothing was generated."""
        await self._close(reservation, ZERO)

    async def _close(self, reservation: Reservation, real: tuple[int, ...]) -> None:
        if not reservation.open:
            return
        reservation.open = False  # before the await: a retry must not apply it twice
        delta = tuple(a - b for a, b in zip(real, reservation.delta, strict=True))
        if any(delta):
            await self._adjust(reservation.bounds, reservation.subs, delta)

    def retry_after(self, quota: QuotaRef) -> int:
        return seconds_until_reset(quota.window, self._clock())

    def price_of(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        return self.prices.price_of(model, tokens_in, tokens_out)

    async def counters(
        self, *, scope: str | None = None, window: str | None = None, ident: str | None = None
    ) -> list[dict[str, Any]]:
        """Current-window counters for the CLI and GET /usage/v1/counters, sorted."""
        bounds = self._windows.bounds(self._clock())
        out: list[dict[str, Any]] = []
        for w in ([window] if window else WINDOWS):
            for s, i, row in await self._list(bounds, w, scope):
                if ident is None or i == ident:
                    out.append(counter_row(s, i, w, bounds[w], row))
        order = {w: n for n, w in enumerate(WINDOWS)}
        out.sort(key=lambda r: (SCOPES.index(r["scope"]), r["id"], order[r["window"]]))
        return out
