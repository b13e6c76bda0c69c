"""Long base64 and hex runs, decoded and scanned: a base64-encoded key is still a key.

One level only (what a decoded run contains is not decoded again) and bounded: runs shorter
than ``decode_min_chars`` are ignored, at most ``decode_max_runs`` runs per string are
decoded, each cut to ``decode_max_chars``. Decoded bytes that are not mostly printable UTF-8
(images, ciphertext, random tokens) are dropped without scanning. A finding inside a run is
reported over the whole encoded run (that is what redaction masks), with the detector name
prefixed ``base64:`` or ``hex:``.

Cost on ordinary text: one regex pass whose first item is a character class (the engine
skips at C speed), so prose costs about as much as any other detector.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

from pep.content.detectors import Span
from pep.content.settings import ContentSettings

_HEX = frozenset("0123456789abcdefABCDEF")


class EncodedRuns:
    def __init__(self, settings: ContentSettings) -> None:
        self._min = settings.decode_min_chars
        self._max = settings.decode_max_chars
        self._runs = settings.decode_max_runs
        self._pattern = re.compile(
            rf"[A-Za-z0-9+/_-]{{{self._min},}}={{0,2}}")

    def spans(self, text: str, detect: Callable[[str], list[Span]]) -> list[Span]:
        if len(text) < self._min:
            return []
        out: list[Span] = []
        for n, m in enumerate(self._pattern.finditer(text)):
            if n >= self._runs:
                break
            run = m.group()
            decoded = _decode(run[: self._max])
            if decoded is None:
                continue
            kind, plain = decoded
            for span in detect(plain):
                out.append(Span(m.start(), m.end(), span.type, f"{kind}:{span.detector}"))
        return out


def _decode(run: str) -> tuple[str, str] | None:
    body = run.rstrip("=")
    if len(body) % 2 == 0 and all(c in _HEX for c in body):
        try:
            raw = binascii.unhexlify(body)
            kind = "hex"
        except (binascii.Error, ValueError):
            return None
    else:
        if len(body) % 4 == 1:
            body = body[:-1]  # a cut run: drop the dangling sextet
        padded = body + "=" * (-len(body) % 4)
        alt = b"-_" if ("-" in body or "_" in body) else b"+/"
        try:
            raw = base64.b64decode(padded, altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            return None
        kind = "base64"
    try:
        plain = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(1 for c in plain if c.isprintable() or c in "\n\r\t")
    if printable < 0.9 * len(plain) or not plain:
        return None
    return kind, plain
