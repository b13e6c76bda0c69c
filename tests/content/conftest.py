from __future__ import annotations

import pytest

from pep.content import ContentInspector, ContentSettings


@pytest.fixture(scope="session")
def inspector() -> ContentInspector:
    return ContentInspector(ContentSettings())


def found(inspector: ContentInspector, text: str) -> list[tuple[str, str]]:
    """(type, exact normalised text of the span) for every finding in one message."""
    normalised = inspector.normalise(text)
    return [(f.type, normalised[f.start : f.end]) for f in inspector.inspect([text])]
