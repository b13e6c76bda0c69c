"""Quota and budget thresholds: which limits this request's admission carried across 80 % or
100 % (``THRESHOLDS``), for the ``quota.threshold`` event (pep/events.py).

The comparison uses the counter as the atomic admission saw it just before this request's
reservation (``Reservation.used_before``) and the amount reserved, so across any number of
concurrent requests and replicas exactly one admitted request carries a counter across each
threshold of a window (a reservation settled lower later does not un-send it). A request
refused by a quota is the ``quota.exceeded`` event instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pep.policy.contract import QuotaLimit
from pep.usage.admission import Reservation
from pep.usage.pricing import NANOS_PER_USD

THRESHOLDS = (80, 100)


@dataclass(frozen=True, slots=True)
class Crossing:
    limit: QuotaLimit
    percent: int
    used: float  # after this request, in the limit's unit (USD for cost)


def _reserved(delta: tuple[int, ...], metric: str) -> int:
    if metric == "requests":
        return delta[0]
    if metric == "prompt_tokens":
        return delta[1]
    if metric == "completion_tokens":
        return delta[2]
    if metric == "tokens":
        return delta[1] + delta[2]
    return delta[3]


def crossings(limits: Sequence[QuotaLimit], reservation: Reservation) -> list[Crossing]:
    found: list[Crossing] = []
    if len(reservation.used_before) != len(limits):
        return found
    for limit, before in zip(limits, reservation.used_before):
        scale = NANOS_PER_USD if limit.metric == "cost_usd" else 1
        bound = limit.limit * scale
        after = before + _reserved(reservation.delta, limit.metric)
        for percent in THRESHOLDS:
            mark = bound * percent / 100
            if before < mark <= after:
                found.append(Crossing(limit, percent, after / scale))
    return found
