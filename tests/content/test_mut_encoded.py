"""Encoded runs (pep.content.encoded) at their bounds: the shortest run, padding next to the
longest decoded slice, runs far into a text, which runs count against the per-string limit,
and folded text (the caller then has no ASCII view to lend)."""

from __future__ import annotations

import base64

from pep.content import ContentInspector, ContentSettings

RUN = base64.b64encode(b"mail ann@example.com").decode()  # 28 characters, one "=" of padding


def findings(inspector: ContentInspector, text: str) -> list[tuple[str, str, int, int]]:
    return [(f.type, f.detector, f.start, f.end) for f in inspector.inspect([text])]


def test_a_run_of_exactly_the_minimum_length_is_decoded(inspector: ContentInspector) -> None:
    run = base64.b64encode(b"xy ann@example.com").decode()
    assert len(run) == ContentSettings().decode_min_chars == 24
    assert findings(inspector, run) == [("email", "builtin:base64:email", 0, 24)]


def test_padding_after_the_longest_slice_is_two_equals_signs_at_most() -> None:
    inspector = ContentInspector(ContentSettings(decode_min_chars=8, decode_max_chars=16))
    run = base64.b64encode(b"a@example.de").decode()
    assert len(run) == 16  # exactly decode_max_chars, no padding of its own
    # Two "=" after a full-length slice belong to the run, a third does not.
    assert findings(inspector, run + "===") == [("email", "builtin:base64:email", 0, 18)]
    assert findings(inspector, "see " + run + "==") == [("email", "builtin:base64:email", 4, 22)]


def test_padding_belongs_to_a_run_far_into_the_text(inspector: ContentInspector) -> None:
    start = 8400  # past decode_max_chars: the padding bound counts from the run's own start
    text = "x " * (start // 2) + RUN + " y"
    assert RUN.endswith("=")
    assert findings(inspector, text) == [("email", "builtin:base64:email", start, start + 28)]


def test_the_first_runs_of_a_string_are_the_ones_decoded() -> None:
    inspector = ContentInspector(ContentSettings(decode_max_runs=2))
    text = " ".join([RUN] * 4)
    assert [(f.start, f.end) for f in inspector.inspect([text])] == [(0, 28), (29, 57)]


def test_runs_in_folded_text_are_still_decoded(inspector: ContentInspector) -> None:
    # A confusable next to ASCII is folded for detection, so the decoder gets the folded
    # text without the caller's ASCII view, and computes its own (non-ASCII left in it).
    text = "\u0455k caf\u00e9 " + RUN + " y"
    assert inspector.normalise(text) == text
    assert findings(inspector, text) == [("email", "builtin:base64:email", 8, 36)]


def test_decoded_non_ascii_text_is_folded_and_scanned(inspector: ContentInspector) -> None:
    run = base64.b64encode("mail j\u00fcrgen@ex\u00e4mple.de".encode()).decode()
    assert findings(inspector, run) == [("email", "builtin:base64:email", 0, len(run))]


def test_only_equals_signs_are_stripped_from_the_end_of_a_run(
        inspector: ContentInspector) -> None:
    # The run ends in "X" (no padding): that sextet carries the last letter of the address.
    run = base64.b64encode(b"mail a ann@example.iW").decode()
    assert run.endswith("X") and "=" not in run
    assert findings(inspector, run) == [("email", "builtin:base64:email", 0, 28)]
    assert findings(inspector, "mail a ann@example.i") == []  # without that letter: none
