"""The output scanner used for the optional output decision on model answers."""

from __future__ import annotations

from pep.content import ContentInspector


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
