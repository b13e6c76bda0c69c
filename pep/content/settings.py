"""Content inspection settings (the ``content:`` slice of the settings tree)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, field_validator

from pep.settings_base import Frozen

FindingType = Literal[
    "email",
    "phone",
    "payment_card",
    "us_ssn",
    "iban",
    "ip_address",
    "api_key",
    "private_key",
]


class ContentSettings(Frozen):
    # False: ``inspect`` reports no findings (policy sees an empty input.content). Redaction
    # obligations are still honoured: a policy that asks for masking always gets it.
    enabled: bool = True
    # Which finding types ``inspect`` reports into input.content. Fewer types = less CPU and
    # less noise; it does not limit what a ``redact`` obligation can mask.
    types: tuple[FindingType, ...] = get_args(FindingType)  # all of them
    # Upper bound on the message text inspected per request (characters, all messages).
    # Inspection is linear but not free (about 1 us per character on digit-only text), so a
    # larger request is refused (413) rather than scanned partially: fail closed.
    max_chars: int = Field(1_000_000, gt=0)
    # What a masked span becomes. {TYPE} is the upper-case type, {type} the type as is.
    mask: str = Field("[REDACTED:{TYPE}]", min_length=1, max_length=64)

    @field_validator("mask")
    @classmethod
    def _mask_formats(cls, value: str) -> str:
        try:
            rendered = value.format(TYPE="EMAIL", type="email")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError("may only use the placeholders {TYPE} and {type}") from exc
        # A mask that itself looks like content would be re-detected on the next pass.
        if "@" in rendered or any(c.isdigit() for c in rendered):
            raise ValueError("must not contain '@' or digits")
        return value
