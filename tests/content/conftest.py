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


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.,=+@%-")


def plain_id(value: object) -> str | None:
    """A parametrised test id of plain ASCII (``ids=plain_id``), for text and bytes values.

    mutmut passes each test's node id back to pytest to re-run it, and pytest cannot select
    an id holding ``::``, ``/``, brackets, spaces or its own escapes of non-ASCII text
    (mutmut's clean run then stops with exit 4, "not found"). Spaces become ``_``, any other
    character outside letters, digits and ``_.,=+@%-`` becomes ``_`` (ASCII) or ``u`` and its
    hex code point; pytest numbers any ids this makes equal. Other values keep pytest's
    default id (``None``), except functions, named by their ``__name__``.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        name = getattr(value, "__name__", None) if callable(value) else None
        return name if isinstance(name, str) else None
    out = [c if c in _PLAIN else "_" if ord(c) < 128 else f"u{ord(c):x}" for c in value]
    return "".join(out)[:60] or "empty"
