"""ContentInspector edges found by mutation testing (scripts/mutate.py content)."""

from __future__ import annotations

from typing import Any

from pep.content import ContentInspector


def test_redacting_an_embeddings_request_walks_it_as_embeddings(
        inspector: ContentInspector) -> None:
    # In an embeddings request only model and input have their own rules: any other field,
    # even one called "messages", is client data whose every string (a "role" too) is masked.
    body: dict[str, Any] = {"model": "e", "input": "mail bob@example.org",
                            "messages": [{"role": "eve@example.org"}]}
    out, count = inspector.redact_request(body, "embeddings", {"email"})
    assert count == 2
    assert out == {"model": "e", "input": "mail [REDACTED:EMAIL]",
                   "messages": [{"role": "[REDACTED:EMAIL]"}]}
    # As a chat request, the same "messages" entry is a message and its role is not text.
    out, count = inspector.redact_request(body, "chat.completions", {"email"})
    assert count == 1
    assert out["messages"] == [{"role": "eve@example.org"}]


def test_findings_in_a_message_outside_its_text_belong_to_no_message(
        inspector: ContentInspector) -> None:
    # Tool-call arguments sit in message 0 but are not its text: message_index -1, offsets
    # into the string itself, the location saying where it is. The invisible characters of
    # the text are reported with the kind of character that hid them as the detector.
    body: dict[str, Any] = {"model": "m", "messages": [
        {"role": "assistant", "content": "ok\u200b", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "send", "arguments": '{"to": "ann@example.com"}'}}]}]}
    scan = inspector.scan_request(body, "chat.completions", 1)
    assert [(f.type, f.message_index, f.start, f.end, f.detector, f.location)
            for f in scan.findings] == [
        ("invisible_text", 0, 2, 2, "builtin:zero_width", "messages[0].content"),
        ("email", -1, 0, 15, "builtin:email",
         "messages[0].tool_calls[0].function.arguments.to"),
    ]


def test_a_message_beyond_the_text_count_gets_findings_indexing_its_own_string(
        inspector: ContentInspector) -> None:
    body: dict[str, Any] = {"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "user", "content": "card 4111 1111 1111 1111 please"}]}
    scan = inspector.scan_request(body, "chat.completions", 1)
    assert scan.texts == ["hi"]
    assert [(f.type, f.message_index, f.start, f.end) for f in scan.findings] == [
        ("payment_card", 1, 5, 24)]


def test_offsets_in_the_third_text_part_count_every_part_before_it(
        inspector: ContentInspector) -> None:
    parts = [{"type": "text", "text": t} for t in ("a", "three", "mail bob@example.org")]
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": parts}]}
    scan = inspector.scan_request(body, "chat.completions", 1)
    assert scan.texts == ["a\nthree\nmail bob@example.org"]
    (f,) = scan.findings
    assert (f.start, f.end) == (13, 28)
    assert scan.texts[0][f.start : f.end] == "bob@example.org"


def test_embeddings_inputs_are_scanned_as_the_texts_of_their_positions(
        inspector: ContentInspector) -> None:
    body: dict[str, Any] = {"model": "e", "input": ["hello", "mail bob@example.org"]}
    scan = inspector.scan_request(body, "embeddings", 2)
    assert scan.texts == ["hello", "mail bob@example.org"]
    assert [(f.type, f.message_index, f.start, f.end, f.location) for f in scan.findings] == [
        ("email", 1, 5, 20, "input[1]")]
