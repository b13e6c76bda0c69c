from __future__ import annotations

import pytest

from pep.content import ContentInspector, ContentSettings


@pytest.fixture
def inspector() -> ContentInspector:
    # Built per test (about 10 ms), not per session: construction builds the detectors and
    # the normaliser's tables, and mutation testing (scripts/mutate.py) credits a function
    # only to the tests during which it runs, so a shared instance would leave a mutated
    # detector table "covered" by the first test alone.
    return ContentInspector(ContentSettings())


def found(inspector: ContentInspector, text: str) -> list[tuple[str, str]]:
    """(type, exact normalised text of the span) for every finding in one message."""
    normalised = inspector.normalise(text)
    return [(f.type, normalised[f.start : f.end]) for f in inspector.inspect([text])]
