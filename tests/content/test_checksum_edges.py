"""Checksum validators at the edges the detectors rely on: Mastercard's 2-series range and an
IBAN of the wrong length for its country."""

from __future__ import annotations

import pytest

from pep.content.checksums import card_prefix_ok, iban_ok, payment_card_ok
from tests.content.conftest import plain_id


@pytest.mark.parametrize(("digits", "ok"), [
    ("2221000000000009", True), ("2720999999999999", True),
    ("2220999999999999", False), ("2721000000000000", False),
], ids=plain_id)
def test_mastercard_two_series_range(digits: str, ok: bool) -> None:
    assert card_prefix_ok(digits) is ok


def test_a_luhn_valid_two_series_mastercard_is_a_card() -> None:
    assert payment_card_ok("2223000048400011")  # Mastercard's published 2-series test number


def test_an_iban_of_the_wrong_length_for_its_country_is_not_one() -> None:
    assert iban_ok("DE89370400440532013000")
    assert not iban_ok("DE8937040044053201300")
    assert not iban_ok("DE893704004405320130000")
    assert not iban_ok("XX89370400440532013000")
