"""``ContentInspector.scan_request``: the one inspection of a whole canonical request that the
pipeline runs (message texts for the policy, findings with their location, the body to
forward)."""

from __future__ import annotations

from typing import Any

import pytest

from pep.content import ContentInspector, ContentSettings
from pep.errors import PayloadTooLarge

ZWSP = "\u200b"


def two_messages() -> dict[str, Any]:
    return {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"},
                                     {"type": "text", "text": "mail bob@example.org"}]},
        {"role": "user", "content": "card 4111 1111 1111 1111 please"},
    ]}


def test_message_findings_index_the_joined_text_of_that_message(
        inspector: ContentInspector) -> None:
    scan = inspector.scan_request(two_messages(), "chat.completions", 2)
    assert scan.texts == ["hi\nmail bob@example.org", "card 4111 1111 1111 1111 please"]
    spans = [(f.type, f.message_index, scan.texts[f.message_index][f.start:f.end], f.location)
             for f in scan.findings]
    assert spans == [
        ("email", 0, "bob@example.org", "messages[0].content[1].text"),
        ("payment_card", 1, "4111 1111 1111 1111", "messages[1].content"),
    ]
    assert all(f.detector.startswith("builtin:") for f in scan.findings)


def test_findings_outside_message_text_belong_to_no_message_and_index_their_own_string(
        inspector: ContentInspector) -> None:
    body = two_messages()
    body["metadata"] = {"note": "ask ann@example.com"}
    scan = inspector.scan_request(body, "chat.completions", 2)
    (meta,) = [f for f in scan.findings if f.location == "metadata.note"]
    assert (meta.type, meta.message_index, meta.start, meta.end) == ("email", -1, 4, 19)


def test_the_text_count_bounds_which_messages_get_joined_texts(
        inspector: ContentInspector) -> None:
    # n_texts is request.messages' length; a message beyond it still gets findings.
    scan = inspector.scan_request(two_messages(), "chat.completions", 1)
    assert scan.texts == ["hi\nmail bob@example.org"]
    assert [f.type for f in scan.findings] == ["email", "payment_card"]


def test_the_character_budget_counts_every_string_and_refuses_past_it() -> None:
    small = ContentInspector(ContentSettings(max_chars=20))
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "a" * 10},
                                       {"role": "user", "content": "b" * 10}]}
    assert small.scan_request(body, "chat.completions", 2).texts == ["a" * 10, "b" * 10]
    body["messages"].append({"role": "user", "content": "c"})
    with pytest.raises(PayloadTooLarge) as e:
        small.scan_request(body, "chat.completions", 3)
    assert e.value.code == "content_too_large" and "20 characters" in e.value.message


def test_invisible_characters_are_reported_where_they_are_and_stripped_before_forwarding(
        inspector: ContentInspector) -> None:
    text = f"pay{ZWSP}{ZWSP}ment"
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": text}]}
    scan = inspector.scan_request(body, "chat.completions", 1)
    (inv,) = scan.findings
    assert (inv.type, inv.start, inv.end, inv.message_index) == ("invisible_text", 3, 3, 0)
    assert scan.texts == ["payment"]
    assert scan.body["messages"][0]["content"] == "payment"
    assert body["messages"][0]["content"] == text  # the client's body is not modified


def test_keep_mode_reports_invisible_characters_but_forwards_them() -> None:
    keep = ContentInspector(ContentSettings(invisible="keep"))
    text = f"pay{ZWSP}ment"
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    scan = keep.scan_request(body, "chat.completions", 1)
    assert [f.type for f in scan.findings] == ["invisible_text"]
    assert scan.body["messages"][0]["content"] == text


def test_only_the_configured_types_are_reported() -> None:
    emails = ContentInspector(ContentSettings(types=("email",)))
    body = two_messages()
    body["messages"][0]["content"][0]["text"] = f"h{ZWSP}i"
    scan = emails.scan_request(body, "chat.completions", 2)
    assert [f.type for f in scan.findings] == ["email"]
    assert scan.body["messages"][0]["content"][0]["text"] == "hi"  # stripping still applies
    off = ContentInspector(ContentSettings(enabled=False))
    assert off.scan_request(two_messages(), "chat.completions", 2).findings == []
