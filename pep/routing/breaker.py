"""A per-deployment circuit breaker: closed -> open (skip) -> half-open (one trial)."""

from __future__ import annotations

from collections.abc import Callable


class CircuitBreaker:
    __slots__ = ("_threshold", "_cooldown", "_clock", "_failures", "_opened_at", "_trial")

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float]) -> None:
        self._threshold = failures
        self._cooldown = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        if self._opened_at is None:
            return True
        if self._trial or self._clock() - self._opened_at < self._cooldown:
            return False
        self._trial = True  # half-open: exactly one request probes the deployment
        return True

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def abandon(self) -> None:
        """The attempt never reached the provider (no free connection): it proves nothing,
        so a half-open trial slot is handed back for the next request."""
        self._trial = False

    def failure(self) -> None:
        self._failures += 1
        if self._trial or self._failures >= self._threshold:
            self._opened_at = self._clock()
            self._trial = False
