"""Usage counters exposed to policy as input.usage; the PEP counts, Rego decides."""

from __future__ import annotations

from typing import Any, Protocol

from pep.policy.contract import QuotaRef
from pep.principal import Principal


class UsageUnavailable(Exception):
    """The counter store cannot answer; behaviour follows usage.on_store_error."""


class UsageTracker(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def snapshot(self, principal: Principal, client_id: str | None) -> dict[str, Any]:
        """The document placed at input.usage."""
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

    def retry_after(self, quota: QuotaRef) -> int:
        """Seconds until the given window frees capacity."""
        ...

    async def ready(self) -> tuple[bool, dict[str, Any]]: ...
