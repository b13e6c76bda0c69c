"""Invisible characters: what kind each one is reported as (the invisible_text finding's
detector), at the edges of each range, and that strip mode removes them in every plane."""

from __future__ import annotations

import pytest

from pep.content.normalise import Normaliser
from tests.content.conftest import plain_id


@pytest.mark.parametrize(("char", "kind"), [
    ("\U000e0000", "unicode_tag"), ("\U000e0041", "unicode_tag"), ("\U000e007f", "unicode_tag"),
    ("\u200b", "zero_width"), ("\u2060", "zero_width"), ("\ufeff", "zero_width"),
    ("\u202e", "bidi_control"), ("\u2066", "bidi_control"), ("\u200f", "bidi_control"),
    ("\ufe00", "variation_selector"), ("\ufe0f", "variation_selector"),
    ("\U000e0100", "variation_selector"), ("\U000e01ef", "variation_selector"),
    ("\x00", "control"), ("\x1f", "control"), ("\x7f", "control"), ("\x80", "control"),
    ("\x9f", "control"),
    ("\u00ad", "format"), ("\u2064", "format"), ("\U0001d173", "format"),
], ids=plain_id)
def test_each_invisible_character_is_reported_with_its_kind(char: str, kind: str) -> None:
    n = Normaliser()
    text = f"é{char}b"  # non-ASCII, so the Unicode path runs
    assert n.strip(text) == "éb"
    assert list(n.invisible_runs(text)) == [(1, kind)]


def test_a_run_is_reported_once_at_its_offset_in_the_stripped_text() -> None:
    n = Normaliser()
    text = "ab\u200b\u200bcd\U000e0041\U000e0042e"
    assert n.strip(text) == "abcde"
    assert list(n.invisible_runs(text)) == [(2, "zero_width"), (4, "unicode_tag")]


def test_astral_invisible_characters_are_stripped_even_without_bmp_ones() -> None:
    n = Normaliser()
    assert n.strip("pay\U000e0070\U000e0061me") == "payme"
    assert n.strip("ré\U000110bdsumé") == "résumé"
    assert n.strip("résumé 😀") == "résumé 😀"  # an astral character that is not invisible
