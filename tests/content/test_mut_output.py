"""OutputScanner over answers longer than its overlap window: however a stream is cut into
deltas and checks, the findings are exactly those of one scan of the whole answer (each
reported once, offsets into the whole normalised text)."""

from __future__ import annotations

from pep.content import ContentInspector
from pep.content.output import LOOKBACK, OVERLAP
from pep.policy.contract import Finding


def _spans(findings: list[Finding]) -> list[tuple[str, int, int, int, str]]:
    return [(f.type, f.message_index, f.start, f.end, f.detector) for f in findings]


def _filler(n: int) -> str:
    return ("lorem ipsum dolor sit amet " * (n // 27 + 1))[:n]


def test_incremental_findings_equal_one_scan_of_the_whole_answer(
        inspector: ContentInspector) -> None:
    first = "bob@example.org " + _filler(2000 - 16)
    # Second check: region = 2000 - OVERLAP; an address starts exactly there, another ends
    # just before it, and one more sits past the end of the first scan.
    region = len(first) - OVERLAP
    at_region = "eve@example.org "
    before = " amy@example.org "
    first = first[: region - len(before)] + before + at_region + first[region + len(at_region):]
    assert len(first) == 2000 and first.index(at_region) == region
    second = " then call 555-123-4567 and ann@example.net."
    out = inspector.output_scanner(check_every_chars=0)
    out.feed(first[:700])
    out.feed(first[700:])
    early = out.findings()
    assert [out.text[f.start : f.end] for f in early] == [
        "bob@example.org", "amy@example.org", "eve@example.org"]
    out.feed(second)
    whole = first + second
    assert out.text == whole
    late = out.findings()
    assert _spans(late) == _spans(inspector.inspect([whole]))
    assert [whole[f.start : f.end] for f in late] == [
        "bob@example.org", "amy@example.org", "eve@example.org", "555-123-4567",
        "ann@example.net"]
    assert out.findings() == late  # nothing new: the same findings, not rescanned


def test_a_long_answer_checked_at_every_delta_reports_each_finding_once(
        inspector: ContentInspector) -> None:
    parts = [f"item {i}: mail u{i}@example.org, card 4111 1111 1111 1111; " + _filler(300)
             for i in range(12)]
    whole = "".join(parts)
    out = inspector.output_scanner(check_every_chars=64)
    for start in range(0, len(whole), 97):  # deltas that cut findings in two
        out.feed(whole[start : start + 97])
        out.findings()
    assert _spans(out.findings()) == _spans(inspector.inspect([whole]))
    assert out.types() == ["email", "payment_card"]
    assert len(out.findings()) == 24


def test_raw_text_read_mid_stream_keeps_growing(inspector: ContentInspector) -> None:
    out = inspector.output_scanner(check_every_chars=0)
    out.feed("Bob\u200b ")
    assert out.raw_text == "Bob\u200b "
    out.feed("wrote")
    assert out.raw_text == "Bob\u200b wrote"
    assert out.text == "Bob wrote"
    out.feed("!")
    assert (out.raw_text, out.text) == ("Bob\u200b wrote!", "Bob wrote!")


KEY = "sk-proj-" + "Ab3" * 600  # an API key longer than the overlap window
PEM = ("-----BEGIN PRIVATE KEY-----\n" + "\n".join(["MIIEv" + "A" * 59] * 40)
       + "\n-----END PRIVATE KEY-----")


def test_a_key_longer_than_the_overlap_cut_by_a_check_is_reported_whole(
        inspector: ContentInspector) -> None:
    for secret, kind in ((KEY, "builtin:openai"), (PEM, "builtin:pem")):
        whole = "here: " + secret + " (done)"
        out = inspector.output_scanner(check_every_chars=0)
        out.feed(whole[:1500])
        assert [(f.start, f.end) for f in out.findings()] == [(6, 1500)]  # so far
        out.feed(whole[1500:3000])
        out.findings()
        out.feed(whole[3000:])
        late = out.findings()
        assert [(f.start, f.end, f.detector) for f in late] == [(6, 6 + len(secret), kind)]
        assert _spans(late) == _spans(inspector.inspect([whole]))


def test_the_rescan_of_a_cut_finding_reaches_back_at_most_lookback_characters(
        inspector: ContentInspector) -> None:
    whole = "here: sk-proj-1" + "x" * (LOOKBACK + 2000) + " (done)"
    out = inspector.output_scanner(check_every_chars=0)
    first = LOOKBACK + 1000
    out.feed(whole[:first])
    assert [(f.start, f.end) for f in out.findings()] == [(6, first)]
    out.feed(whole[first:])
    # The key began more than LOOKBACK characters before the last check ended: it is not
    # scanned again (its start is out of reach), and the finding keeps the part found.
    assert [(f.start, f.end) for f in out.findings()] == [(6, first)]
