from __future__ import annotations

import pytest
from pydantic import ValidationError

from pep.config import ConfigError, settings_from_mapping
from pep.usage.pricing import PriceTable, price_of
from pep.usage.settings import UsageSettings

PRICED = UsageSettings(
    prices={"mock-gpt": {"input_per_1m": 3.0, "output_per_1m": 15.0}},
    default_price={"input_per_1m": 1.0, "output_per_1m": 2.0},
)


def test_cost_uses_input_and_output_prices_per_million() -> None:
    assert PriceTable(PRICED).price_of("mock-gpt", 1_000_000, 100_000) == pytest.approx(4.5)


def test_unknown_model_uses_the_default_price() -> None:
    assert price_of(PRICED, "other", 500_000, 500_000) == pytest.approx(1.5)


def test_unknown_model_without_default_has_no_cost() -> None:
    settings = UsageSettings(prices={"mock-gpt": {"input_per_1m": 3.0, "output_per_1m": 15.0}})
    assert price_of(settings, "other", 10, 10) is None


def test_cost_is_kept_to_the_nano_dollar() -> None:
    assert PriceTable(PRICED).cost_nanos("mock-gpt", 7, 3) == 7 * 3000 + 3 * 15000


def test_negative_price_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError):
        UsageSettings(prices={"m": {"input_per_1m": -1, "output_per_1m": 0}})


def test_unknown_store_scheme_names_the_key() -> None:
    raw = {"identity": {"issuers": []}, "usage": {"store": "mysql://db"}}
    with pytest.raises(ConfigError, match="usage.store"):
        settings_from_mapping(raw)
