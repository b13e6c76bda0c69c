"""Usage counters exposed to policy as input.usage; the PEP counts, Rego decides."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pep.policy.contract import QuotaLimit, QuotaRef
from pep.principal import Principal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pep.usage.admission import Reservation
    from pep.usage.settings import UsageSettings


class UsageUnavailable(Exception):
    """The counter store cannot answer; behaviour follows usage.on_store_error.

    When raised by ``record``, ``cost_usd`` still carries the computed cost so the audit
    record is complete even though the counters missed this request."""

    cost_usd: float | None = None


class UsageTracker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def snapshot(self, principal: Principal, client_id: str | None, *,
                       extra: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """The document placed at input.usage (``extra``: further subjects, MCP tools)."""
        ...

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
        """Add usage; returns the estimated cost in USD when a price is configured."""
        ...

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
        extra: Sequence[tuple[str, str]] = (),
    ) -> Reservation:
        """Atomically check ``limits`` and reserve the request's estimated usage on every
        counter (pep/usage/admission.py). Raises QuotaExceeded, InvalidQuota or
        UsageUnavailable."""
        ...

    async def settle(self, reservation: Reservation, model: str, tokens_in: int,
                     tokens_out: int, *, estimated: bool) -> float | None:
        """Replace a reservation by the real usage; returns the cost like ``record``."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back in full (nothing was generated)."""
        ...

    def retry_after(self, quota: QuotaRef) -> int:
        """Seconds until the given window frees capacity."""
        ...

    async def ready(self) -> tuple[bool, dict[str, Any]]: ...

    def price_of(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        """Cost in USD from the configured price table (the same figure ``record`` returns)."""
        ...

    async def counters(
        self, *, scope: str | None = None, window: str | None = None, ident: str | None = None
    ) -> list[dict[str, Any]]:
        """Current-window counters, one row per (scope, id, window); see docs/usage.md."""
        ...


def open_tracker(
    settings: UsageSettings, *, clock: Callable[[], float] = time.time
) -> UsageTracker:
    """The tracker for ``usage.store``; call ``start()`` before use and ``close()`` after.
    ``clock`` (Unix seconds) exists for tests that need to cross window boundaries."""
    if settings.store == "memory":
        from pep.usage.memory import MemoryTracker

        return MemoryTracker(settings, clock=clock)
    from pep.usage.redis_store import RedisTracker

    return RedisTracker(settings, clock=clock)
