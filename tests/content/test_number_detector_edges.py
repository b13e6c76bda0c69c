"""Number detectors at their edges: detector names, what may stand before a number, SSA
rules on context SSNs, what may follow an IBAN, IPv4 octets and the version window, the
shortest IPv6 address reported."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector
from tests.content.conftest import plain_id


def hits(inspector: ContentInspector, text: str) -> list[tuple[str, str, str]]:
    return [(f.type, f.detector, text[f.start:f.end]) for f in inspector.inspect([text])]


@pytest.mark.parametrize(("text", "found"), [
    ("SSN is 123-45-6789 ok", ("us_ssn", "builtin:ssn", "123-45-6789")),
    ("ssn: 123451234", ("us_ssn", "builtin:ssn_context", "123451234")),
    ("iban GB82WEST12345698765432 ok", ("iban", "builtin:iban", "GB82WEST12345698765432")),
    ("host 192.168.1.20 up", ("ip_address", "builtin:ipv4", "192.168.1.20")),
    ("to 10.0.0.255 now", ("ip_address", "builtin:ipv4", "10.0.0.255")),
    ("addr fe80::1ff:fe23:4567:890a up", ("ip_address", "builtin:ipv6", "fe80::1ff:fe23:4567:890a")),
    ("at fe80::1ff:fe23:4567:890a%eth0 now",
     ("ip_address", "builtin:ipv6", "fe80::1ff:fe23:4567:890a%eth0")),  # the zone is covered
    ("at ab::c:d:e now", ("ip_address", "builtin:ipv6", "ab::c:d:e")),  # five hex digits
], ids=plain_id)
def test_each_number_is_found_by_its_detector(inspector: ContentInspector, text: str,
                                              found: tuple[str, str, str]) -> None:
    assert hits(inspector, text) == [found]


@pytest.mark.parametrize("text", [
    ".4111111111111111", "-4111111111111111",  # a slice of a longer token
    "9 4111 1111 1111 1111", "x9 4111 1111 1111 1111",  # a group glued to digits before it
    "ssn 666121234", "ssn 123001234", "ssn 123450000",  # area 666, group 00, serial 0000
    "GB82WEST12345698765432_ref", "GB82WEST12345698765432X",  # runs on into a longer word
    "v 1.2.3.4", "build           1.2.3.4",  # a version, the word within 16 characters
    "at a::b:cd now",  # four hex digits: a scope or a slice, not an address
    "at .ab::c:d:e",  # a slice of a longer token
], ids=plain_id)
def test_near_misses_are_not_findings(inspector: ContentInspector, text: str) -> None:
    assert hits(inspector, text) == []


def test_a_version_word_further_back_does_not_hide_an_address(
        inspector: ContentInspector) -> None:
    assert hits(inspector, "build            1.2.3.4") == [
        ("ip_address", "builtin:ipv4", "1.2.3.4")]
