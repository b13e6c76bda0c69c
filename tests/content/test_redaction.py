"""Redaction: masks exactly the findings of the requested types, in the normalised text."""

from __future__ import annotations

from typing import Any

import pytest

from pep.content import ContentInspector, ContentSettings
from pep.errors import Unavailable

VISA = "4111 1111 1111 1111"


def test_redaction_masks_exactly_the_spans_of_requested_types(inspector: ContentInspector) -> None:
    text = f"mail alice@example.com, card {VISA}, call 555-123-4567."
    masked, count = inspector.redact(text, {"email", "payment_card"})
    assert masked == "mail [REDACTED:EMAIL], card [REDACTED:PAYMENT_CARD], call 555-123-4567."
    assert count == 2


def test_redaction_of_a_clean_text_returns_it_unchanged(inspector: ContentInspector) -> None:
    text = "Zero\u200bwidth here but nothing to mask."
    masked, count = inspector.redact(text, {"email"})
    assert (masked, count) == (text, 0)


def test_redaction_forwards_the_normalised_text_so_obfuscation_cannot_survive(
    inspector: ContentInspector,
) -> None:
    text = "ａ\u200bb@example.com wrote ＨＩ"
    masked, count = inspector.redact(text, {"email"})
    assert (masked, count) == ("[REDACTED:EMAIL] wrote HI", 1)


def test_redacted_text_has_no_findings_of_the_redacted_types(inspector: ContentInspector) -> None:
    text = "k sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2 ssn 123-45-6789 ip 10.1.2.3"
    masked, count = inspector.redact(text, {"api_key", "us_ssn", "ip_address"})
    assert count == 3
    assert inspector.inspect([masked]) == []


def test_unknown_redact_type_fails_closed(inspector: ContentInspector) -> None:
    with pytest.raises(Unavailable) as err:
        inspector.redact("alice@example.com", {"emial"})
    assert err.value.code == "unknown_obligation"
    assert err.value.status == 503


def test_unknown_redact_type_fails_even_when_messages_have_nothing_to_mask(
    inspector: ContentInspector,
) -> None:
    with pytest.raises(Unavailable):
        inspector.redact_messages([{"role": "user", "content": "hi"}], {"ssn"})


def test_redaction_works_for_types_not_reported_by_inspection() -> None:
    inspector = ContentInspector(ContentSettings(types=("email",)))
    assert inspector.inspect(["call 555-123-4567"]) == []
    assert inspector.redact("call 555-123-4567", {"phone"}) == ("call [REDACTED:PHONE]", 1)


def test_mask_format_comes_from_settings() -> None:
    inspector = ContentInspector(ContentSettings(mask="<{type} removed>"))
    assert inspector.redact("to a@b.io", {"email"}) == ("to <email removed>", 1)


def test_string_content_messages_are_redacted(inspector: ContentInspector) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am bob@example.org"},
    ]
    out, count = inspector.redact_messages(messages, {"email"})
    assert count == 1
    assert out == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "I am [REDACTED:EMAIL]"},
    ]
    assert messages[1]["content"] == "I am bob@example.org"  # input not modified
    assert out[0] is messages[0]  # untouched messages are passed through


def test_list_content_text_parts_are_redacted_and_images_untouched(
    inspector: ContentInspector,
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,bob@example.org"}}
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "card 4111111111111111"},
                image,
                {"type": "text", "text": "no secrets"},
            ],
        }
    ]
    out, count = inspector.redact_messages(messages, {"payment_card", "email"})
    assert count == 1
    parts = out[0]["content"]
    assert parts[0] == {"type": "text", "text": "card [REDACTED:PAYMENT_CARD]"}
    assert parts[1] is image
    assert parts[2] == {"type": "text", "text": "no secrets"}


def test_anthropic_image_blocks_and_tool_results_are_handled(inspector: ContentInspector) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "eA=="},
    }
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                image,
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "owner: carol@example.net"}],
                },
            ],
        }
    ]
    out, count = inspector.redact_messages(messages, {"email"})
    assert count == 1
    assert out[0]["content"][0] is image
    assert out[0]["content"][1]["content"] == [{"type": "text", "text": "owner: [REDACTED:EMAIL]"}]


def test_messages_without_text_content_are_left_alone(inspector: ContentInspector) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA=="}}]},
    ]
    out, count = inspector.redact_messages(messages, {"email"})
    assert count == 0
    assert out[0] is messages[0] and out[1] is messages[1]
