"""E-mail addresses, including the "alice [at] example [dot] com" spelling.

Anchored on each "@" (found with ``str.find``, memchr speed) rather than scanning the text
with a pattern that starts at every word character: the domain is matched forwards from the
"@" and the local part backwards from it, inside a 64-character window (RFC 5321 limit).
Unicode letters are allowed (internationalised addresses), as normalisation leaves them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pep.content.detectors import Span

_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_TLD = r"[^\W\d_]{2,63}"
_DOMAIN = rf"(?:{_LABEL}\.)+{_TLD}(?![\w-])"
_LOCAL_CHARS = r"[\w.%+-]"
_AT_WORD = r"\s*[\[({]\s*(?i:at)\s*[\])}]\s*"
_DOT_WORD = r"(?:\.|\s*[\[({]\s*(?i:dot)\s*[\])}]\s*)"
_OBFUSCATED = (
    rf"(?<!{_LOCAL_CHARS}){_LOCAL_CHARS}+{_AT_WORD}(?:{_LABEL}{_DOT_WORD})+{_TLD}(?![\w-])"
)


class EmailDetector:
    type = "email"

    def __init__(self) -> None:
        self._domain = re.compile(_DOMAIN)
        # With endpos at the "@", \Z anchors the local part right before it.
        # The look-behind makes every start inside a word fail at once (linear, not quadratic).
        self._local = re.compile(rf"(?<!{_LOCAL_CHARS}){_LOCAL_CHARS}+\Z")
        self._at_word = re.compile(r"[\[({]\s*at\s*[\])}]", re.IGNORECASE)
        self._obfuscated = re.compile(_OBFUSCATED)

    def find(self, text: str, _digits: int) -> Iterator[Span]:
        at = text.find("@")
        while at >= 0:
            domain = self._domain.match(text, at + 1)
            local = self._local.search(text, max(0, at - 64), at) if domain else None
            if domain is not None and local is not None:
                yield Span(local.start(), domain.end(), "email", "email")
                at = text.find("@", domain.end())
            else:
                at = text.find("@", at + 1)
        hint = self._at_word.search(text)
        if hint is not None:
            for m in self._obfuscated.finditer(text, max(0, hint.start() - 66)):
                yield Span(m.start(), m.end(), "email", "email_obfuscated")
