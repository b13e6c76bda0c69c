"""The detector framework (pep.content.detectors): where a RegexDetector resumes after a
rejected candidate, an empty match or a hit its validator cut short, and the digit gates of
the number detectors at the very start of a text."""

from __future__ import annotations

import re

import pytest

from pep.content import ContentInspector
from pep.content.detectors import RegexDetector, Span, Validate, min_digits
from tests.content.conftest import found


def bounded(validate: Validate, limit: int = 50) -> Validate:
    """The validator, refusing to be called more than ``limit`` times: a scan that stops
    moving on fails at once instead of hanging."""
    calls = 0

    def check(m: re.Match[str], text: str) -> tuple[int, int, str] | None:
        nonlocal calls
        calls += 1
        assert calls <= limit, "the scan does not move on"
        return validate(m, text)

    return check


def _spans(detector: RegexDetector, text: str) -> list[tuple[int, int]]:
    digits = sum(c.isdigit() for c in text)
    return [(s.start, s.end) for s in detector.find(text, digits)]


def test_scanning_resumes_right_after_a_rejected_candidate() -> None:
    # Letters are candidates that the validator rejects; the digits right after them are a hit.
    detector = RegexDetector("phone", re.compile(r"[a-z]+|[0-9]+"), min_digits(1),
                             bounded(lambda m, _t: (m.start(), m.end(), "t")
                                     if m.group().isdigit() else None))
    assert _spans(detector, "ab12 cd3") == [(2, 4), (7, 8)]


def test_an_empty_candidate_moves_the_scan_on_by_one_character() -> None:
    detector = RegexDetector("phone", re.compile(r"x*"), min_digits(0),
                             bounded(lambda m, _t: (m.start(), m.end(), "t")
                                     if m.group() else None))
    assert _spans(detector, "ab xx c x") == [(3, 5), (8, 9)]


def test_a_pattern_that_matches_empty_text_ends_at_the_end_of_the_text() -> None:
    # No built-in pattern matches empty text, but the loop must not hang on one that does:
    # an empty match at the very end used to be found again and again.
    detector = RegexDetector("phone", re.compile(r"x*"), min_digits(0),
                             bounded(lambda m, _t: (m.start(), m.end(), "t")))
    assert _spans(detector, "ab") == [(0, 0), (1, 1), (2, 2)]
    assert _spans(detector, "") == [(0, 0)]


def test_a_hit_cut_short_by_its_validator_resumes_at_the_hit_end() -> None:
    # One digit per hit: each shortened candidate is followed by the next digit's hit.
    detector = RegexDetector("phone", re.compile(r"[0-9]+"), min_digits(1),
                             bounded(lambda m, _t: (m.start(), m.start() + 1, "t")))
    assert _spans(detector, "123 45") == [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6)]


def test_an_empty_hit_still_moves_the_scan_on() -> None:
    detector = RegexDetector("phone", re.compile(r"[0-9]+"), min_digits(1),
                             bounded(lambda m, _t: (m.start(), m.start(), "t")))
    assert _spans(detector, "12 3") == [(0, 0), (1, 1), (3, 3)]


def test_spans_carry_the_detector_type_and_the_validator_name() -> None:
    detector = RegexDetector("iban", re.compile(r"[0-9]+"), min_digits(1),
                             bounded(lambda m, _t: (m.start(), m.end(), "builtin:x")))
    assert list(detector.find("a 12", 2)) == [Span(2, 4, "iban", "builtin:x")]


def test_the_digit_gate_counts_the_digits_it_is_given() -> None:
    detector = RegexDetector("phone", re.compile(r"[0-9]+"), min_digits(3),
                             bounded(lambda m, _t: (m.start(), m.end(), "t")))
    assert list(detector.find("12", 2)) == []
    assert [(s.start, s.end) for s in detector.find("123", 3)] == [(0, 3)]


@pytest.mark.parametrize(("text", "expected"), [
    ("4111 1111 1111 1111", ("payment_card", "4111 1111 1111 1111")),
    ("123-45-6789", ("us_ssn", "123-45-6789")),
    ("DE89370400440532013000", ("iban", "DE89370400440532013000")),
    ("555-123-4567", ("phone", "555-123-4567")),
], ids=["card", "ssn", "iban", "phone"])
def test_numbers_at_the_very_start_of_a_text_are_found(
        inspector: ContentInspector, text: str, expected: tuple[str, str]) -> None:
    assert found(inspector, text) == [expected]


@pytest.mark.parametrize("number", [
    "4111 1111 1111 1111", "123-45-6789", "192.168.1.20", "DE89370400440532013000",
    "555-123-4567", "fe80::1ff:fe23:4567:890a",
], ids=["card", "ssn", "ipv4", "iban", "phone", "ipv6"])
def test_a_number_right_after_an_underscore_is_part_of_a_longer_token(
        inspector: ContentInspector, number: str) -> None:
    assert found(inspector, " " + number) != []  # the same number after a space is found
    assert found(inspector, "_" + number) == []
