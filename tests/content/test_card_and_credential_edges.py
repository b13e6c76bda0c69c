"""Issuer ranges, lengths and separators of payment cards; the boundary and digit rules of
credential detectors; the detector name each finding carries."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector
from tests.content.conftest import plain_id


def hits(inspector: ContentInspector, text: str) -> list[tuple[str, str, str]]:
    return [(f.type, f.detector, text[f.start:f.end]) for f in inspector.inspect([text])]


def luhn_complete(prefix: str, length: int) -> str:
    """``prefix`` + zeros + the one check digit that makes a Luhn-valid number (test oracle)."""
    for check in "0123456789":
        number = prefix + "0" * (length - len(prefix) - 1) + check
        total = 0
        for i, ch in enumerate(reversed(number)):
            d = int(ch) * (2 if i % 2 else 1)
            total += d - 9 if d > 9 else d
        if total % 10 == 0:
            return number
    raise AssertionError("unreachable: one check digit always completes a number")


@pytest.mark.parametrize(("prefix", "length"), [
    ("4", 13), ("4", 19), ("51", 16), ("6011", 16),  # Visa (shortest, longest), MC, Discover
    ("34", 15), ("3412", 15), ("37", 15),  # Amex (second digit decides)
    ("30", 14), ("36", 14), ("38", 14),  # Diners
    ("3528", 16), ("3589", 16),  # JCB: both ends of its range
    ("2221", 16), ("2720", 16),  # Mastercard 2-series: both ends
], ids=plain_id)
def test_luhn_valid_numbers_in_issuer_ranges_are_cards(
        inspector: ContentInspector, prefix: str, length: int) -> None:
    number = luhn_complete(prefix, length)
    assert hits(inspector, f"pay {number} now") == [("payment_card", "builtin:luhn", number)]


@pytest.mark.parametrize(("prefix", "length"), [
    ("3527", 16), ("3590", 16), ("35", 16),  # next to JCB, and 35 outside it
    ("2220", 16), ("2721", 16),  # next to the 2-series
    ("1", 16), ("7", 16), ("8", 16), ("9", 16), ("0", 16),  # no network issues these
    ("4", 12),  # too short
], ids=plain_id)
def test_luhn_valid_numbers_outside_issuer_ranges_are_not_cards(
        inspector: ContentInspector, prefix: str, length: int) -> None:
    assert hits(inspector, f"order {luhn_complete(prefix, length)} shipped") == []


def test_a_group_after_a_grouped_card_is_left_out_of_the_finding(
        inspector: ContentInspector) -> None:
    # 4111 1111 1111 1111 0000 is Luhn-valid as 20 digits too; a card has at most 19.
    assert hits(inspector, "pay 4111 1111 1111 1111 0000 now") == [
        ("payment_card", "builtin:luhn", "4111 1111 1111 1111")]


@pytest.mark.parametrize("text", [
    "Bearer abcdefghij0123456789xyz",  # at the very start of the text
    "Authorization: Bearer abcdefghij0123456789xyz",
    "-Bearer abcdefghij0123456789xyz",
], ids=plain_id)
def test_a_bearer_token_is_a_credential(inspector: ContentInspector, text: str) -> None:
    assert hits(inspector, text) == [("api_key", "builtin:bearer", "abcdefghij0123456789xyz")]


@pytest.mark.parametrize("text", [
    "xBearer abcdefghij0123456789xyz", "see xBearer abcdefghij0123456789xyz",
    "_Bearer abcdefghij0123456789xyz", "see _Bearer abcdefghij0123456789xyz",
], ids=plain_id)
def test_bearer_inside_a_longer_word_is_not_a_header(inspector: ContentInspector,
                                                     text: str) -> None:
    assert hits(inspector, text) == []


@pytest.mark.parametrize("prose", ["sk-ant-abcdefghijklmnopqrstuvwxyz",
                                   "xoxb-abcdefghijklmnop-qrstuvw",
                                   "sk-learn-is-a-library-for-machine-learning"], ids=plain_id)
def test_key_shaped_prose_without_a_digit_is_not_a_key(inspector: ContentInspector,
                                                        prose: str) -> None:
    assert hits(inspector, f"see {prose} here") == []


@pytest.mark.parametrize(("key", "detector"), [
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "anthropic"),
    ("xoxb-1234567890-abcdefghij", "slack"),
    ("sk-proj-abcdefghijklmnopqrstu1", "openai"),
], ids=plain_id)
def test_keys_are_named_by_their_format(inspector: ContentInspector, key: str,
                                        detector: str) -> None:
    assert hits(inspector, f"use {key} now") == [("api_key", f"builtin:{detector}", key)]


def test_a_private_key_block_is_one_pem_finding(inspector: ContentInspector) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
    assert hits(inspector, f"here:\n{pem}\nthanks") == [("private_key", "builtin:pem", pem)]
