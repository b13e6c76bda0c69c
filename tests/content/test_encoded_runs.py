"""Encoded runs decoded for inspection (pep.content.encoded): both base64 alphabets, padding,
cut runs, hex beside padding, and the printable-text threshold."""

from __future__ import annotations

import base64

import pytest

from pep.content import ContentInspector
from tests.content.conftest import plain_id


def findings(inspector: ContentInspector, text: str) -> list[tuple[str, str, int, int]]:
    return [(f.type, f.detector, f.start, f.end) for f in inspector.inspect([text])]


# Three leading bytes chosen so the encodings carry the alphabet-specific characters.
@pytest.mark.parametrize("plain", [b"?>? mail ann@example.com",  # "/" and "+", or "_" and "-"
                                   b">>> mail ann@example.com",  # "+" only, or "-" only
                                   b"??? mail ann@example.com"],  # "/" only, or "_" only
                         ids=plain_id)
@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode], ids=plain_id)
def test_both_base64_alphabets_are_decoded(inspector: ContentInspector, plain: bytes,
                                           encode: object) -> None:
    assert callable(encode)
    run = encode(plain).decode()
    assert findings(inspector, f"x {run} y") == [("email", "builtin:base64:email", 2, 2 + len(run))]


def test_padding_belongs_to_the_run(inspector: ContentInspector) -> None:
    run = base64.b64encode(b"mail ann@example.com").decode()
    assert run.endswith("=")
    assert findings(inspector, f"x {run} y") == [("email", "builtin:base64:email", 2, 2 + len(run))]


def test_a_hex_run_followed_by_equals_signs_is_still_hex(inspector: ContentInspector) -> None:
    run = b"mail ann@example.com".hex()
    assert findings(inspector, run + "==") == [("email", "builtin:hex:email", 0, len(run) + 2)]


def test_a_run_with_one_stray_trailing_character_decodes_its_whole_head(
        inspector: ContentInspector) -> None:
    # 4n+1 characters: the last sextet cannot be a byte, so it is dropped, and the card
    # number before it (its last digit included, or the Luhn check would fail) is found.
    run = base64.b64encode(b"card 4111 1111 1111 1111").decode()
    assert len(run) % 4 == 0
    assert findings(inspector, run + "Q") == [("payment_card", "builtin:base64:luhn", 0, len(run) + 1)]
    assert findings(inspector, run[:-1]) == []  # one sextet short: the last digit is lost


@pytest.mark.parametrize(("controls", "scanned"), [(2, True), (3, False)], ids=plain_id)
def test_decoded_text_must_be_at_least_nine_tenths_printable(
        inspector: ContentInspector, controls: int, scanned: bool) -> None:
    plain = "\x00" * controls + " ann@example.com" + " " * (4 - controls)
    assert len(plain) == 20  # 18 printable of 20 is exactly the threshold
    run = base64.b64encode(plain.encode()).decode()
    assert bool(findings(inspector, run)) is scanned


def test_line_breaks_and_tabs_count_as_printable(inspector: ContentInspector) -> None:
    plain = "a\n\r\tb\n\r\tc\n\r\td\n\r\t ann@example.com"  # 12 of 32 are \n \r \t
    run = base64.b64encode(plain.encode()).decode()
    assert [f[1] for f in findings(inspector, run)] == ["builtin:base64:email"]
