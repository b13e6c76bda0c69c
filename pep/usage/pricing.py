"""The one price function: counters, `regogate usage` and the audit report all use it, so
their cost figures agree."""

from __future__ import annotations

from pep.usage.settings import ModelPrice, UsageSettings

NANOS_PER_USD = 1_000_000_000


class PriceTable:
    """Built once from settings. Costs are computed in integer nano-dollars so that counters
    add exactly (no float drift between a Redis total and the sum of audit records)."""

    __slots__ = ("_default", "_prices")

    def __init__(self, settings: UsageSettings) -> None:
        self._prices: dict[str, ModelPrice] = dict(settings.prices)
        self._default = settings.default_price

    def cost_nanos(self, model: str, tokens_in: int, tokens_out: int) -> int | None:
        price = self._prices.get(model, self._default)
        if price is None:
            return None
        # USD per 1M tokens * 1000 = nano-USD per token.
        return round(tokens_in * price.input_per_1m * 1000 + tokens_out * price.output_per_1m * 1000)

    def rates(self, model: str) -> tuple[float, float] | None:
        """(nano-USD per prompt token, per output token), for the Redis admission script."""
        price = self._prices.get(model, self._default)
        if price is None:
            return None
        return price.input_per_1m * 1000, price.output_per_1m * 1000

    def price_of(self, model: str, tokens_in: int, tokens_out: int) -> float | None:
        """Cost in USD (to the nano-dollar), or None when no price applies to the model."""
        nanos = self.cost_nanos(model, tokens_in, tokens_out)
        return None if nanos is None else nanos / NANOS_PER_USD


def price_of(settings: UsageSettings, model: str, tokens_in: int, tokens_out: int) -> float | None:
    """Convenience for one-off callers (the audit report); hot paths keep a PriceTable."""
    return PriceTable(settings).price_of(model, tokens_in, tokens_out)
