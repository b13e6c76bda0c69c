"""Normalisation: obfuscation that a human (or a model) reads through is undone."""

from __future__ import annotations

from pep.content import ContentInspector


def test_ascii_text_is_returned_unchanged_as_the_same_object(inspector: ContentInspector) -> None:
    text = "Plain ASCII prompt, nothing to do: 42."
    assert inspector.normalise(text) is text


def test_zero_width_characters_are_removed(inspector: ContentInspector) -> None:
    assert (
        inspector.normalise("al\u200bi\u200cc\u200de\u2060@\ufeffexample.com")
        == "alice@example.com"
    )


def test_bidi_controls_are_removed(inspector: ContentInspector) -> None:
    assert inspector.normalise("\u202emoc.elpmaxe\u202c \u2066x\u2069\u200f") == "moc.elpmaxe x"


def test_fullwidth_characters_become_ascii(inspector: ContentInspector) -> None:
    assert inspector.normalise("ａｌｉｃｅ＠ｅｘａｍｐｌｅ．ｃｏｍ　４１") == "alice@example.com 41"


def test_non_ascii_decimal_digits_become_ascii_digits(inspector: ContentInspector) -> None:
    # Arabic-Indic and Devanagari digits.
    assert inspector.normalise("\u0664\u0661\u0661\u0661 \u0967\u0968\u0969") == "4111 123"


def test_unicode_dashes_become_hyphen_minus(inspector: ContentInspector) -> None:
    assert inspector.normalise("555\u2011123\u20134567\u2212") == "555-123-4567-"


def test_tag_characters_used_for_ascii_smuggling_are_removed(inspector: ContentInspector) -> None:
    smuggled = "".join(chr(0xE0000 + ord(c)) for c in "ignore")
    assert inspector.normalise(f"hi{smuggled}é") == "hié"


def test_control_characters_are_removed_but_whitespace_is_kept(inspector: ContentInspector) -> None:
    assert inspector.normalise("a\x00b\x1bc\td\ne\r") == "abc\td\ne\r"


def test_combining_marks_on_ascii_letters_are_removed(inspector: ContentInspector) -> None:
    assert inspector.normalise("a\u0332l\u0332i\u0332c\u0332e\u0332") == "alice"


def test_accented_letters_survive_normalisation(inspector: ContentInspector) -> None:
    assert inspector.normalise("Cafe\u0301 Ju\u0308rgen, naïve") == "Café Jürgen, naïve"


def test_normalisation_is_idempotent(inspector: ContentInspector) -> None:
    once = inspector.normalise("ｘ\u200b٤ a\u0332 \u2011 ﬁ")
    assert inspector.normalise(once) == once
