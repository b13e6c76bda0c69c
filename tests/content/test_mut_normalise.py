"""Normaliser edges (pep.content.normalise): offsets of several invisible runs, and the fold
gate when a confusable touches ASCII on one side only."""

from __future__ import annotations

import pytest

from pep.content import normalise
from pep.content.normalise import Normaliser


def test_offsets_of_three_invisible_runs_count_every_run_removed_before() -> None:
    n = Normaliser()
    text = "a\u200bb\u200b\u200bc\u200b\u200b\u200bd"
    assert n.strip(text) == "abcd"
    assert list(n.invisible_runs(text)) == [(1, "zero_width"), (2, "zero_width"),
                                            (3, "zero_width")]


def test_a_confusable_after_ascii_only_is_folded() -> None:
    assert Normaliser().fold("abc\u0430") == "abca"  # Cyrillic a after Latin letters


def test_a_confusable_before_ascii_only_is_folded() -> None:
    assert Normaliser().fold("\u0430bc") == "abc"


def test_single_script_text_is_not_folded() -> None:
    text = "\u0430\u0431\u0432 \u0433\u0434"  # Cyrillic only: no ASCII anchor touched
    assert Normaliser().fold(text) is text


@pytest.mark.parametrize("body,points", [
    ("", []),
    ("a", [0x61]),
    ("a-c", [0x61, 0x62, 0x63]),
    ("a-", [0x61, 0x2D]),  # a closing "-" is a character
    ("-a", [0x2D, 0x61]),
    ("a-c-e", [0x61, 0x62, 0x63, 0x2D, 0x65]),  # a range, then "-" and "e"
    ("c-a", []),  # an inverted range is empty
    ("\u200b-\u200d\u2060", [0x200B, 0x200C, 0x200D, 0x2060]),
    ("\n-\n", [0x0A]),
], ids=["empty", "one", "range", "dash_last", "dash_first", "range_then_dash", "inverted",
        "zero_width", "newline"])
def test_character_class_bodies_expand_to_their_code_points(body: str,
                                                            points: list[int]) -> None:
    assert normalise._expand(body) == points


@pytest.mark.parametrize("zero", normalise._DIGIT_ZEROS, ids=lambda z: f"u{z:x}")
def test_every_decimal_digit_block_normalises_to_ascii_digits(zero: int) -> None:
    # Astral blocks too: NFKC maps some (the mathematical digits) but not others (Osmanya,
    # U+104A0), so the table is what makes "𐒤𐒡𐒡𐒡..." a card number the detectors see.
    digits = "".join(chr(zero + d) for d in range(10))
    assert Normaliser().normalise(f"card {digits} end") == "card 0123456789 end"
