"""``pep.content.checksums`` against independent oracles, input by input (mutation testing:
scripts/mutate.py content --only pep/content/checksums.py)."""

from __future__ import annotations

from itertools import product

import pytest

from pep.content.checksums import (
    IBAN_LENGTHS,
    card_prefix_ok,
    iban_ok,
    luhn_ok,
    payment_card_ok,
    us_ssn_ok,
)


def luhn_oracle(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        doubled = int(ch) * (2 if i % 2 else 1)
        total += doubled // 10 + doubled % 10
    return total % 10 == 0


def test_luhn_agrees_with_the_oracle_on_every_number_of_up_to_four_digits() -> None:
    for n in range(1, 5):
        for digits in map("".join, product("0123456789", repeat=n)):
            assert luhn_ok(digits) is luhn_oracle(digits), digits


@pytest.mark.parametrize(("digits", "ok"), [
    ("79927398713", True), ("79927398710", False), ("4111111111111111", True),
    ("4111111111111112", False), ("0", True), ("", True), ("18", True), ("59", True),
])
def test_luhn_on_known_numbers(digits: str, ok: bool) -> None:
    assert luhn_ok(digits) is ok


def prefix_oracle(four: str) -> bool:
    n = int(four)
    return (four[0] in "456" or (four[0] == "3" and four[1] in "04678")
            or 3528 <= n <= 3589 or 2221 <= n <= 2720)


def test_issuer_prefixes_agree_with_the_oracle_on_every_four_digit_start() -> None:
    for four in map("".join, product("0123456789", repeat=4)):
        assert card_prefix_ok(four + "000000000000") is prefix_oracle(four), four


def luhn_complete(body: str) -> str:
    return next(body + c for c in "0123456789" if luhn_oracle(body + c))


def test_a_card_has_13_to_19_digits() -> None:
    for length in range(10, 23):
        number = luhn_complete("4" + "1" * (length - 2))
        assert payment_card_ok(number) is (13 <= length <= 19), length


def test_a_number_of_one_repeated_digit_is_not_a_card() -> None:
    repeated = [d * n for d in "3456" for n in range(13, 20) if luhn_oracle(d * n)]
    assert repeated  # e.g. 5 x 18 and 6 x 15 pass Luhn and the prefix rule
    for number in repeated:
        assert card_prefix_ok(number)
        assert not payment_card_ok(number), number
    # One digit different (the last, made Luhn-valid again) is a card.
    for number in repeated:
        other = luhn_complete(number[:-2] + ("1" if number[0] != "1" else "2"))
        assert payment_card_ok(other), other


def test_a_card_needs_both_the_prefix_and_the_checksum() -> None:
    assert payment_card_ok("4111111111111111")
    assert not payment_card_ok("4111111111111112")  # checksum
    assert luhn_oracle("1111111111111117") and not payment_card_ok("1111111111111117")


@pytest.mark.parametrize(("area", "group", "serial", "ok"), [
    ("123", "45", "6789", True),
    ("000", "45", "6789", False), ("001", "45", "6789", True),
    ("666", "45", "6789", False), ("665", "45", "6789", True), ("667", "45", "6789", True),
    ("900", "45", "6789", False), ("999", "45", "6789", False), ("899", "45", "6789", True),
    ("190", "45", "6789", True), ("129", "45", "6789", True),
    ("123", "00", "6789", False), ("123", "01", "6789", True), ("123", "10", "6789", True),
    ("123", "45", "0000", False), ("123", "45", "0001", True), ("123", "45", "1000", True),
    ("078", "05", "1120", False), ("219", "09", "9999", False), ("457", "55", "5462", False),
    ("078", "05", "1121", True),
])
def test_ssa_rules(area: str, group: str, serial: str, ok: bool) -> None:
    assert us_ssn_ok(area, group, serial) is ok


VALID_IBANS = ["GB82WEST12345698765432", "DE89370400440532013000", "FR1420041010050500013M02606",
               "NL91ABNA0417164300", "NO9386011117947", "BE68539007547034"]


def test_valid_ibans_and_every_change_of_one_digit_or_letter_of_them() -> None:
    # mod 97-10 catches every substitution of a digit by a digit or a letter by a letter.
    for iban in VALID_IBANS:
        assert IBAN_LENGTHS[iban[:2]] == len(iban)
        assert iban_ok(iban), iban
        for i in range(len(iban)):
            kind = "0123456789" if iban[i].isdigit() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            for c in kind:
                if c != iban[i]:
                    changed = iban[:i] + c + iban[i + 1:]
                    assert not iban_ok(changed), changed


def test_an_iban_needs_its_country_length_and_a_known_country() -> None:
    assert not iban_ok("GB82WEST1234569876543")
    assert not iban_ok("GB82WEST123456987654321")
    assert not iban_ok("QQ82WEST12345698765432")
