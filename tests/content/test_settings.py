"""Content settings: which types are reported, the mask format, switching inspection off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pep.content import ContentInspector, ContentSettings
from pep.errors import PayloadTooLarge
from tests.content.conftest import plain_id


def test_only_configured_types_are_reported() -> None:
    inspector = ContentInspector(ContentSettings(types=("email",)))
    findings = inspector.inspect(["a@b.io 555-123-4567 10.0.0.1"])
    assert [f.type for f in findings] == ["email"]


def test_disabled_inspection_reports_nothing() -> None:
    inspector = ContentInspector(ContentSettings(enabled=False))
    assert inspector.inspect(["alice@example.com"]) == []


def test_unknown_type_in_config_is_rejected() -> None:
    with pytest.raises(ValidationError):
        ContentSettings(types=("email", "passport"))


@pytest.mark.parametrize("mask", ["[{secret}]", "<{0}>", "[{TYPE}]@", "[REDACTED-1:{TYPE}]"],
                         ids=plain_id)
def test_mask_with_unknown_placeholder_or_detectable_text_is_rejected(mask: str) -> None:
    with pytest.raises(ValidationError):
        ContentSettings(mask=mask)


def test_content_slice_validates_from_yaml_shaped_data() -> None:
    settings = ContentSettings.model_validate(
        {"types": ["email", "api_key"], "mask": "***{TYPE}***"}
    )
    assert settings.types == ("email", "api_key")
    inspector = ContentInspector(settings)
    assert inspector.redact("a@b.io", {"email"}) == ("***EMAIL***", 1)


def test_scan_returns_normalised_texts_and_a_content_input() -> None:
    inspector = ContentInspector(ContentSettings())
    scan = inspector.scan(["hi", "ｍａｉｌ bob@example.org"])
    assert scan.texts == ["hi", "mail bob@example.org"]
    content = scan.to_input()
    assert content.types == ["email"]
    assert content.findings[0].detector == "builtin:email"
    assert content.model_dump()["findings"][0] == {
        "type": "email", "message_index": 1, "start": 5, "end": 20, "detector": "builtin:email",
            "location": None,
    }  # fmt: skip


def test_text_beyond_the_inspection_limit_is_refused_not_skipped() -> None:
    inspector = ContentInspector(ContentSettings(max_chars=20))
    assert inspector.inspect(["0123456789", "a@b.io"]) != []
    with pytest.raises(PayloadTooLarge) as err:
        inspector.inspect(["0123456789", "alice@example.com"])
    assert err.value.status == 413
