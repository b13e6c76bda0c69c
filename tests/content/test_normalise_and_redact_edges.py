"""Edges of the content core that the end-to-end tests do not reach: every kind of invisible
character, ASCII control stripping, the mixed-script gate of confusable folding, the size
bound, span overlap and redaction of invisible text only, and malformed encoded runs."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector, ContentSettings
from pep.content.encoded import _decode
from pep.content.normalise import Normaliser, invisible_kind
from pep.errors import GatewayError
from tests.content.conftest import plain_id


@pytest.mark.parametrize("ch, kind", [
    ("\U000e0041", "unicode_tag"), ("\u200b", "zero_width"), ("\u202e", "bidi_control"),
    ("\ufe0f", "variation_selector"), ("\U000e0100", "variation_selector"),
    ("\x85", "control"), ("\x07", "control"), ("\u00ad", "format"),
], ids=plain_id)
def test_every_invisible_character_is_named_by_its_kind(ch: str, kind: str) -> None:
    assert invisible_kind(ch) == kind


def test_ascii_controls_are_stripped_and_clean_ascii_is_returned_as_is() -> None:
    n = Normaliser()
    clean = "plain text\twith\ttabs\n"
    assert n.strip(clean) is clean
    assert n.strip("se\x00cr\x07et\x7f") == "secret"


def test_folding_only_touches_mixed_script_text() -> None:
    n = Normaliser()
    assert n.fold("\u0430lice@example.com") == "alice@example.com"  # Cyrillic a + ASCII
    russian = "\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440"
    assert n.fold(russian) == russian
    assert n.fold("ascii only") == "ascii only"


def test_text_over_the_size_bound_is_refused() -> None:
    small = ContentInspector(ContentSettings(max_chars=16))
    with pytest.raises(GatewayError) as err:
        small.scan(["x" * 10, "y" * 10])
    assert err.value.code == "content_too_large"


def test_known_types_and_spans_over_normalised_text() -> None:
    inspector = ContentInspector(ContentSettings())
    assert {"email", "invisible_text", "private_key"} <= inspector.known_types
    text = "write to bob@example.com please"
    spans = inspector.spans(text, ["email"])
    assert [(text[s.start:s.end]) for s in spans] == ["bob@example.com"]
    assert inspector.spans("", ["email"]) == []


def test_redacting_invisible_text_only_strips_it() -> None:
    inspector = ContentInspector(ContentSettings())
    assert inspector.redact("", {"invisible_text"}) == ("", 0)
    assert inspector.redact("hid\u200bden\u2060 text", {"invisible_text"}) == ("hidden text", 1)
    assert inspector.redact("no hidden text", {"invisible_text"}) == ("no hidden text", 0)


def test_malformed_encoded_runs_decode_to_nothing() -> None:
    assert _decode("QUJD-EFG+HIJKLMNOPQRSTUVWX") is None  # base64 and base64url alphabets mixed
    assert _decode("QUJD=QUJDRA") is None  # padding in the middle
    assert _decode("4142434445464748494a4b4c4d4e4f50") == ("hex", "ABCDEFGHIJKLMNOP")
