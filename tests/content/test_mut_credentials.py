"""``pep.content.credentials`` at its edges: where each gate starts the scan, which key
formats need a digit, what may stand before a bearer token, the formats a finding names
(mutation testing: scripts/mutate.py content --only pep/content/credentials.py)."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector

TOKEN = "abcdefghij0123456789xyz"


def hits(inspector: ContentInspector, text: str) -> list[tuple[str, str, str]]:
    return [(f.type, f.detector, text[f.start:f.end]) for f in inspector.inspect([text])]


@pytest.mark.parametrize("text", [
    f"Authorization: BEARER {TOKEN} (the bearer scheme)",  # "bearer" after the upper-case one
    f"Authorization: Bearer {TOKEN} (the BEARER scheme)",
    f"BEARER {TOKEN}",
    f"earer, then Bearer {TOKEN}",  # the word at offset 0
    f"EARER, then BEARER {TOKEN}",
    f"Authorization: BeArEr {TOKEN}",  # any case after the B, as the pattern reads it
    f"bEARER {TOKEN} (then the bearer scheme)",
    f"Authorization: beaRER {TOKEN} (the Bearer scheme)",  # mixed case before a later word
    f"\u0130stanbul \u00e7al\u0131\u015fan: BeArEr {TOKEN}",  # non-ASCII before it
    "\u0130" * 12 + f" BeArEr {TOKEN}",  # lower() lengthens the text before it
    f"Bearer {TOKEN} \u00e7a",  # at offset 0 in a non-ASCII text (scanned whole, from 0)
], ids=["upper_then_lower", "lower_then_upper", "upper_at_0", "word_at_0", "upper_word_at_0",
        "mixed_case", "mixed_at_0", "mixed_then_lower", "non_ascii_before", "longer_lowered",
        "at_0_non_ascii"])
def test_the_first_bearer_in_any_case_is_scanned_from(inspector: ContentInspector,
                                                        text: str) -> None:
    assert hits(inspector, text) == [("api_key", "builtin:bearer", TOKEN)]


KEYS = [
    ("sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "anthropic"),
    ("sk-proj-abcdefghijklmnopqrstu1", "openai"),
    ("sk_live_abcdefghijklmnop1234", "stripe"),
    ("rk_test_abcdefghijklmnop", "stripe"),  # stripe needs no digit
    ("AKIAABCDEFGHIJKLMNOP", "aws_access_key"),
    ("ghp_" + "a" * 36, "github"),
    ("github_pat_" + "a" * 22, "github"),
    ("xoxb-1234567890-abcdefghij", "slack"),
    ("AIza" + "b" * 35, "google"),
    ("eyJhbGciOi.eyJzdWIiOi.c2ln", "jwt"),
]


@pytest.mark.parametrize(("key", "detector"), KEYS, ids=[d for _, d in KEYS])
def test_a_key_is_found_at_the_start_of_the_text_and_after_other_text(
        inspector: ContentInspector, key: str, detector: str) -> None:
    assert hits(inspector, key) == [("api_key", f"builtin:{detector}", key)]
    filler = "words " * 5
    assert hits(inspector, f"{filler}{key} {filler}") == [("api_key", f"builtin:{detector}", key)]


@pytest.mark.parametrize("token", ["123456789012345678901", "abcdefghijklmnopqrstu"],
                         ids=["digits_only", "letters_only"])
def test_a_bearer_token_needs_a_digit_and_a_letter(inspector: ContentInspector,
                                                   token: str) -> None:
    assert hits(inspector, f"Authorization: Bearer {token}") == []


def test_a_private_key_at_the_start_of_the_text(inspector: ContentInspector) -> None:
    pem = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk\n-----END EC PRIVATE KEY-----"
    assert hits(inspector, pem) == [("private_key", "builtin:pem", pem)]
