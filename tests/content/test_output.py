"""The output scanner used for the optional output decision on model answers."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector
from pep.errors import Unavailable


def test_feed_reports_a_due_check_every_interval(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=10)
    assert [out.feed(d) for d in ["abcd", "efgh", "ij", "k", "lmnopqrstu", "v"]] == [
        False, False, True, False, True, False,
    ]  # fmt: skip


def test_zero_interval_never_asks_for_a_mid_stream_check(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=0)
    assert not any(out.feed("x" * 1000) for _ in range(5))


def test_findings_cover_the_whole_accumulated_answer(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=100)
    for delta in ["Contact ali", "ce@exam", "ple.com or call 555-", "123-4567."]:
        out.feed(delta)
    assert out.raw_text == "Contact alice@example.com or call 555-123-4567."
    findings = out.findings()
    assert [(f.type, f.message_index, out.text[f.start : f.end]) for f in findings] == [
        ("email", 0, "alice@example.com"),
        ("phone", 0, "555-123-4567"),
    ]


def test_output_text_is_normalised_so_spans_index_it(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=100)
    out.feed("key: AKIA\u200bIOSFODNN7")
    out.feed("EXAMPLE")
    assert out.text == "key: AKIAIOSFODNN7EXAMPLE"
    (finding,) = out.findings()
    assert out.text[finding.start : finding.end] == "AKIAIOSFODNN7EXAMPLE"
    assert out.types() == ["api_key"]


def test_answer_can_be_redacted_with_the_same_masks(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=0)
    out.feed("Her SSN is 123-45-6789.")
    assert inspector.redact(out.text, {"us_ssn"}) == ("Her SSN is [REDACTED:US_SSN].", 1)


def test_text_grows_after_it_was_read(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=5)
    out.feed("one ")
    assert out.text == "one "
    out.feed("two")
    assert out.text == "one two"
    assert out.findings() == []


def test_a_check_is_due_at_exactly_the_interval_counted_from_the_last_one(
        inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=5)
    assert [out.feed(d) for d in ["abcd", "e", "fghi", "j", ""]] == [False, True, False, True, False]
    out.feed("kl")
    out.checked()  # the caller checked (its time bound): the count starts again
    assert [out.feed(d) for d in ["mnop", "q"]] == [False, True]
    every_char = inspector.output_scanner(check_every_chars=1)
    assert [every_char.feed(d) for d in ["a", "b"]] == [True, True]


def test_an_empty_answer_is_empty(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=5)
    assert (out.raw_text, out.text, out.findings(), out.types()) == ("", "", [], [])


def test_a_finding_at_the_start_split_across_deltas_is_reported_whole(
        inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=0)
    out.feed("bob@exam")
    assert out.findings() == []  # not an address yet
    out.feed("ple.org wrote")
    assert [(f.start, f.end) for f in out.findings()] == [(0, 15)]


def test_redacting_invisible_text_and_a_finding_counts_both(inspector: ContentInspector) -> None:
    assert inspector.redact("a\u200b bob@example.org", {"invisible_text", "email"}) == (
        "a [REDACTED:EMAIL]", 2)


def test_spans_of_chosen_types_or_of_all(inspector: ContentInspector) -> None:
    text = "bob@example.org 4111111111111111"
    assert [s.type for s in inspector.spans(text)] == ["email", "payment_card"]
    assert [s.type for s in inspector.spans(text, ["payment_card"])] == ["payment_card"]
    assert inspector.spans(text, []) == []


def test_redacting_an_unknown_type_fails_closed_naming_it(inspector: ContentInspector) -> None:
    with pytest.raises(Unavailable) as e:
        inspector.redact("text", {"email", "bogus"})
    assert (e.value.code, e.value.message) == (
        "unknown_obligation", "redact obligation names unknown finding types: ['bogus']")
