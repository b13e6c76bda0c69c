"""``pep.content.numeric`` detectors at their edges, each detector on its own (no priority
merge hides a finding): where a grouped card may start, Diners grouping, the SSA rules on
the dashed SSN form, lower-case IBANs and what may stand around one, the IPv4 gate's first
dot (mutation testing: scripts/mutate.py content --only pep/content/numeric.py)."""

from __future__ import annotations

import pytest

from pep.content.numeric import numeric_detectors


def found(text: str) -> list[tuple[str, str, str]]:
    digits = sum(c in "0123456789" for c in text)
    return [(s.type, s.detector, text[s.start:s.end])
            for d in numeric_detectors() for s in d.find(text, digits)]


def of(kind: str, text: str) -> list[tuple[str, str]]:
    return [(name, span) for t, name, span in found(text) if t == kind]


def test_a_grouped_card_after_one_separator_at_the_start_is_a_card() -> None:
    # The text before the separator is not a digit (it is the end of the text, text[-1]).
    assert of("payment_card", " 4111 1111 1111 1111") == [("luhn", "4111 1111 1111 1111")]


def test_a_three_group_diners_card_is_a_card() -> None:
    assert of("payment_card", "card 3056 930902 5904 ok") == [("luhn", "3056 930902 5904")]


@pytest.mark.parametrize("ssn", ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567",
                                 "123-45-0000", "078-05-1120", "219-09-9999", "457-55-5462"])
def test_the_dashed_ssn_form_follows_the_ssa_rules(ssn: str) -> None:
    assert of("us_ssn", f"id {ssn} ok") == []
    assert of("us_ssn", "id 123-45-6789 ok") == [("ssn", "123-45-6789")]


def test_a_context_ssn_glued_to_a_word_is_not_one() -> None:
    assert of("us_ssn", "xssn 123451234") == []
    assert of("us_ssn", "ssn 123451234") == [("ssn_context", "123451234")]


def test_iban_case_position_and_neighbours() -> None:
    assert of("iban", "iban gb82west12345698765432") == [("iban", "gb82west12345698765432")]
    assert of("iban", "GB82WEST12345698765432") == [("iban", "GB82WEST12345698765432")]
    assert of("iban", "refGB82WEST12345698765432") == []
    assert of("iban", "GB82 WEST 1234 5698 7654 32") == [("iban", "GB82 WEST 1234 5698 7654 32")]


@pytest.mark.parametrize(("text", "address"), [
    ("1.2.3.4", "1.2.3.4"),  # four digits exactly, the first dot at index 1
    ("1.234.5.6 up", "1.234.5.6"),  # the next dot is too far on to start from
    (".x 10.0.0.1", "10.0.0.1"),  # a dot at index 0 does not end the search
    ("a.. 10.0.0.1", "10.0.0.1"),
], ids=["at_0", "far_next_dot", "dot_at_0", "double_dot"])
def test_the_ipv4_gate_starts_before_the_first_dot_between_digits(text: str,
                                                                   address: str) -> None:
    assert of("ip_address", text) == [("ipv4", address)]


def test_a_dot_at_the_end_of_the_text_is_not_an_address() -> None:
    assert found("call 1234.") == []


@pytest.mark.parametrize("text", ["sSN 123451234", "SsN 123451234", "SOcial security 123451234",
                                  "ssn SSN Ssn OCIAL social security 123451234"],
                         ids=["sSN", "SsN", "SOcial", "every_word"])
def test_the_ssn_context_gate_lets_through_every_case_of_the_opening_word(text: str) -> None:
    assert of("us_ssn", text) == [("ssn_context", "123451234")]


def test_an_iban_with_ten_digits_is_found() -> None:
    # Bahrain: four bank letters and 14 account characters, here 6 letters and 8 digits.
    assert of("iban", "BH06BMAGABCDEF12345678") == [("iban", "BH06BMAGABCDEF12345678")]


@pytest.mark.parametrize("address", ["ABCD:EF01:ABCD:EF01:ABCD:EF01:ABCD:EF01",
                                     "abcd:ef01:abcd:ef01:abcd:ef01:abcd:ef01",
                                     "2001:db8::8a2e:370:7334"],
                         ids=["upper_hex_only", "lower_hex_only", "at_0"])
def test_the_ipv6_gate_takes_hex_of_either_case_and_an_address_at_the_start(address: str) -> None:
    assert of("ip_address", address) == [("ipv6", address)]


def test_the_zone_of_an_ipv6_address_does_not_count_towards_its_hex_digits() -> None:
    # Four hex digits: a short form, however many hex letters the zone has.
    assert of("ip_address", "at 1:2::3:4%abc") == []
    assert of("ip_address", "at fe80::1%eth0") == [("ipv6", "fe80::1%eth0")]


def test_a_phone_number_glued_to_a_plus_is_not_one_and_eight_digits_are_enough() -> None:
    assert of("phone", "++49 30 1234") == []
    assert of("phone", "call +49 30 1234") == [("phone_intl", "+49 30 1234")]
