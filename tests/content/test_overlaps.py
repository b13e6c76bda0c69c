"""Overlapping findings (pep.content.inspector._resolve_overlaps): the highest priority wins,
then the longest, then the first; spans that only touch are both kept; one conflict never
hides a later, separate finding."""

from __future__ import annotations

from pep.content.detectors import Span
from pep.content.inspector import _resolve_overlaps


def s(start: int, end: int, kind: str) -> Span:
    return Span(start, end, kind, "d")


def test_the_higher_priority_type_wins_wherever_it_starts() -> None:
    # An API key beats the phone number inside it, also when the phone starts first.
    assert _resolve_overlaps([s(0, 10, "phone"), s(5, 30, "api_key")]) == [s(5, 30, "api_key")]
    assert _resolve_overlaps([s(5, 30, "api_key"), s(0, 10, "phone")]) == [s(5, 30, "api_key")]


def test_among_equals_the_longest_wins_then_the_first() -> None:
    assert _resolve_overlaps([s(0, 5, "email"), s(2, 12, "email")]) == [s(2, 12, "email")]
    assert _resolve_overlaps([s(3, 9, "email"), s(0, 6, "email")]) == [s(0, 6, "email")]


def test_spans_that_only_touch_are_both_kept_in_order() -> None:
    assert _resolve_overlaps([s(5, 9, "phone"), s(0, 5, "api_key")]) == [
        s(0, 5, "api_key"), s(5, 9, "phone")]
    assert _resolve_overlaps([s(0, 5, "phone"), s(5, 9, "api_key")]) == [
        s(0, 5, "phone"), s(5, 9, "api_key")]


def test_a_dropped_span_does_not_hide_the_ones_ranked_after_it() -> None:
    # Dropped: email 2-4 (inside the key), phone 25-32 (runs into email 30-40), phone 8-12.
    spans = [s(0, 10, "api_key"), s(8, 12, "phone"), s(20, 24, "phone"), s(2, 4, "email"),
             s(30, 40, "email"), s(25, 32, "phone")]
    assert _resolve_overlaps(spans) == [s(0, 10, "api_key"), s(20, 24, "phone"),
                                        s(30, 40, "email")]
