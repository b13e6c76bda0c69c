"""The detector framework: spans, the regex detector, priorities and the built-in set.

A detector runs on *normalised* text (pep.content.normalise). Cost is what matters here (this
runs on every request), so each detector has a gate that is checked first -- fewer ASCII
digits than the smallest match needs, no "@", no key prefix -> the detector does not run --
and its pattern starts with a single character class or literal. That lets the regex engine
skip ahead at C speed (~1 ns/char); a pattern that starts with a look-behind or an
alternation is tried at every position (~20-40 ns/char). The word-boundary checks that would
be look-behinds are therefore done by the validators, which only see candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

# Higher wins when two findings overlap: the more specific/sensitive one is kept, and the
# mask that covers it covers the other.
PRIORITY: dict[str, int] = {
    "private_key": 8,
    "api_key": 7,
    "payment_card": 6,
    "iban": 5,
    "us_ssn": 4,
    "email": 3,
    "ip_address": 2,
    "phone": 1,
    # Not a span detector: reported by the inspector where invisible characters were removed.
    "invisible_text": 0,
}
FINDING_TYPES: frozenset[str] = frozenset(PRIORITY)


class Span(NamedTuple):
    start: int
    end: int
    type: str
    detector: str


# (normalised text, number of ASCII digits in it) -> offset to start scanning at, or None
# when the detector cannot match.
Gate = Callable[[str, int], "int | None"]
# A candidate match -> (start, end, detector name) of the finding, or None to reject it.
Validate = Callable[[re.Match[str], str], "tuple[int, int, str] | None"]


class Detector(Protocol):
    @property
    def type(self) -> str: ...  # read-only: detectors are frozen dataclasses

    def find(self, text: str, digits: int) -> Iterator[Span]: ...


@dataclass(frozen=True, slots=True)
class RegexDetector:
    type: str
    pattern: re.Pattern[str]
    gate: Gate
    validate: Validate

    def find(self, text: str, digits: int) -> Iterator[Span]:
        pos = self.gate(text, digits)
        if pos is None:
            return
        search = self.pattern.search
        while (m := search(text, pos)) is not None:
            hit = self.validate(m, text)
            pos = m.end() if m.end() > m.start() else m.end() + 1
            if hit is not None:
                yield Span(hit[0], hit[1], self.type, hit[2])
                # A validator may shorten a greedy candidate (IBAN cut to its country's
                # length, card without a trailing CVV group): resume right after the hit.
                pos = max(hit[1], m.start() + 1)
            if pos > len(text):
                # An empty match at the very end: search() would clamp pos to the end and
                # find the same empty match again, forever.
                return


def min_digits(n: int) -> Gate:
    def gate(_text: str, digits: int) -> int | None:
        return 0 if digits >= n else None

    return gate


def word_char_before(text: str, start: int, extra: str = "") -> bool:
    """True when ``text[start-1]`` is a word character (or one of ``extra``): the candidate
    is a slice of a longer token."""
    if start == 0:
        return False
    ch = text[start - 1]
    return ch.isalnum() or ch == "_" or ch in extra


def build_detectors() -> tuple[Detector, ...]:
    """All built-in detectors. Compiles every pattern: call once per inspector."""
    from pep.content.credentials import credential_detectors
    from pep.content.email_address import EmailDetector
    from pep.content.numeric import numeric_detectors

    return (*credential_detectors(), *numeric_detectors(), EmailDetector())
