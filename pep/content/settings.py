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
    "invisible_text",
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
    # Invisible characters (Unicode tag block, zero-width, bidi controls, variation selectors,
    # C0/C1 controls) in client text: "strip" removes them from what is forwarded, so the
    # provider receives exactly the text that was inspected; "keep" forwards them unchanged
    # (a policy can then deny on the invisible_text finding, or redact it, which strips).
    # Either way they are reported as invisible_text findings.
    invisible: Literal["strip", "keep"] = "strip"
    # Long base64 / hex runs are decoded (one level) and what they contain is scanned: a
    # base64-encoded key is still a key. Bounded: runs of at least decode_min_chars, at most
    # decode_max_chars each (longer runs: their first decode_max_chars), decode_max_runs per
    # string.
    decode_encoded: bool = True
    decode_min_chars: int = Field(24, ge=8)
    decode_max_chars: int = Field(8192, ge=16)
    decode_max_runs: int = Field(16, ge=1)
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
