"""Atomic admission: check every limit in effect and reserve this request's usage at once.

The policy decides on a snapshot of the counters, but every request in flight reads its
snapshot before any of them is counted, so a snapshot check alone lets a burst of N
concurrent requests through a limit of L < N. The decision therefore also names the limits
in effect (the ``quota`` obligation, ``QuotaLimit``), and the store checks them and adds an
estimate of this request to *every* counter of the request in one atomic step:

    reserve:  (1 request, estimated prompt, max_tokens x n, their cost) if every limit holds
    settle:   + (real usage - reservation) once the answer is known
    release:  - reservation when nothing was generated (refusal, upstream error)

The memory store does it without an ``await`` between check and increment; the Redis store in
one Lua script (pep/usage/redis_store.py), which applies the same rules as ``fit`` below.
Reserved usage is ordinary counter content, so the policy's snapshot (``input.usage``) and
``regogate usage`` include requests in flight. A crashed gateway leaves at most its
reservations, which go with their window. Semantics: docs/usage.md "Admission".

The comparisons are exactly the policy's (policies/quota/quota.rego), applied to the counters
*including* reservations: refused when ``used >= limit``; token and prompt-token limits also
when ``used + estimated prompt > limit``; a token limit with ``shrink`` lowers the output
reserved (and the ``max_tokens`` forwarded) to what is left, and refuses when nothing is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pep.policy.contract import QuotaLimit
from pep.usage.pricing import NANOS_PER_USD
from pep.usage.windows import WINDOWS

Bounds = dict[str, tuple[int, int]]
Subject = tuple[str, str]

_PROMPT_CHECKED = frozenset({"tokens", "prompt_tokens"})
_SHRINKING = frozenset({"tokens", "completion_tokens"})


class InvalidQuota(ValueError):
    """A quota obligation this request cannot enforce (the policy's fault: 503)."""


class QuotaExceeded(Exception):
    """The atomic check refused the request: ``failures`` are (limit, used) pairs, used in
    the limit's unit (USD for cost)."""

    def __init__(self, failures: list[tuple[QuotaLimit, float]]) -> None:
        super().__init__(", ".join(f.code for f, _ in failures))
        self.failures = failures


@dataclass(frozen=True, slots=True)
class Check:
    """One limit resolved to a row of the request (subject-major, WINDOWS order)."""

    row: int
    metric: str
    limit: float  # in row units: nano-USD for cost_usd
    shrink: bool


@dataclass(slots=True)
class Reservation:
    """What ``reserve`` added; ``settle`` or ``release`` closes it exactly once."""

    bounds: Bounds  # the windows at admission: usage is settled into those
    subs: list[Subject]
    delta: tuple[int, ...]  # (requests, prompt, completion, nano-USD, estimated) added
    output_cap: int | None  # max_tokens (per choice) the PEP must forward, when limits set one
    open: bool = True
    # Per limit checked (the obligation's order): its counter just before this reservation,
    # in row units (nano-USD for cost). What threshold events compare (pep/usage/thresholds.py).
    used_before: tuple[int, ...] = ()


def resolve(limits: Sequence[QuotaLimit], subs: list[Subject], *, shrinkable: bool) -> list[Check]:
    """Map each limit to the row it is checked against. A limit on a counter this request does
    not add to could not be held atomically: refuse the obligation rather than half-enforce it."""
    index = {s: i for i, s in enumerate(subs)}
    n = len(WINDOWS)
    checks: list[Check] = []
    for limit in limits:
        i = index.get((limit.scope, limit.key))
        if i is None:
            raise InvalidQuota(
                f"quota obligation names the {limit.scope} counter {limit.key!r}, which this "
                "request does not count toward")
        value = round(limit.limit * NANOS_PER_USD) if limit.metric == "cost_usd" else limit.limit
        checks.append(Check(i * n + WINDOWS.index(limit.window), limit.metric, float(value),
                            limit.shrink and shrinkable and limit.metric in _SHRINKING))
    return checks


def used_of(row: Sequence[int], metric: str) -> int:
    if metric == "requests":
        return row[0]
    if metric == "prompt_tokens":
        return row[1]
    if metric == "completion_tokens":
        return row[2]
    if metric == "tokens":
        return row[1] + row[2]
    return row[3]


def fit(rows: Sequence[Sequence[int]], checks: Sequence[Check], prompt: int, out: int,
        choices: int) -> tuple[list[tuple[int, int]], int]:
    """(failures as (check index, used), output tokens per choice that fit). The Lua script in
    pep/usage/redis_store.py is this function; tests run both against the same cases."""
    failed: list[tuple[int, int]] = []
    shrunk: tuple[int, int] | None = None
    for c, check in enumerate(checks):
        used = used_of(rows[check.row], check.metric)
        if used >= check.limit or (check.metric in _PROMPT_CHECKED and used + prompt > check.limit):
            failed.append((c, used))
        elif check.shrink:
            left = check.limit - used - (prompt if check.metric == "tokens" else 0)
            room = math.floor(left / choices)
            if room < out:
                out, shrunk = room, (c, used)
    if not failed and out < 1 and shrunk is not None:
        failed.append(shrunk)
    return failed, out


def failures(limits: Sequence[QuotaLimit], failed: Sequence[tuple[int, int]]) -> QuotaExceeded:
    return QuotaExceeded([
        (limits[c], used / NANOS_PER_USD if limits[c].metric == "cost_usd" else used)
        for c, used in failed
    ])


def message(limit: QuotaLimit, used: float) -> str:
    """The policy's denial message (quota.rego ``_reason``), so a refusal reads the same
    whichever check made it."""
    return (f'quota "{limit.name or limit.scope}" reached: {_num(used)} of {_num(limit.limit)} '
            f"{limit.metric} per {limit.window} ({limit.scope})")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
