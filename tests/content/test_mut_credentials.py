"""``pep.content.credentials`` at its edges: where each gate starts the scan, which key
formats need a digit, what may stand before a bearer token, the formats a finding names
(mutation testing: scripts/mutate.py content --only pep/content/credentials.py)."""

from __future__ import annotations

import pytest

from pep.content import ContentInspector

TOKEN = "abcdefghij0123456789xyz"


def hits(inspector: ContentInspector, text: str) -> list[tuple[str, str, str]]:
    return [(f.type, f.detector, text[f.start:f.end]) for f in inspector.inspect([text])]


@pytest.mark.parametrize("text", [
    f"Authorization: BEARER {TOKEN} (the bearer scheme)",  # "bearer" after the upper-case one
    f"Authorization: Bearer {TOKEN} (the BEARER scheme)",
    f"BEARER {TOKEN}",
    f"earer, then Bearer {TOKEN}",  # the word at offset 0
    f"EARER, then BEARER {TOKEN}",
])
def test_the_first_bearer_in_either_case_is_scanned_from(inspector: ContentInspector,
                                                        text: str) -> None:
    assert hits(inspector, text) == [("api_key", "builtin:bearer", TOKEN)]
