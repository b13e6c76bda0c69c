"""OutputScanner: accumulates a model answer for the optional output decision.

One per request (``inspector.output_scanner(check_every_chars)``). The pipeline feeds every
text delta; ``feed`` returns True when at least ``check_every_chars`` characters arrived since
the last due check (0 or less: never mid-stream, only the final check). ``text`` and
``findings()`` describe the whole answer so far in normalised form, as message_index 0, so the
spans index ``text`` -- exactly what input.output carries.

Each check rescans the whole answer (a finding can straddle chunk boundaries, and NFKC is not
chunk-safe), so the cost over a stream is about answer_length**2 / check_every_chars
characters scanned: pick an interval of a few hundred characters or more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pep.policy.contract import Finding

if TYPE_CHECKING:
    from pep.content.inspector import ContentInspector


class OutputScanner:
    __slots__ = ("_every", "_inspector", "_normalised", "_parts", "_raw", "_since")

    def __init__(self, inspector: ContentInspector, check_every_chars: int) -> None:
        self._inspector = inspector
        self._every = check_every_chars
        self._parts: list[str] = []
        self._since = 0
        self._raw: str | None = ""
        self._normalised: str | None = ""

    def feed(self, delta: str) -> bool:
        """Add a chunk of answer text; True when a mid-stream check is due."""
        if not delta:
            return False
        self._parts.append(delta)
        self._raw = self._normalised = None
        self._since += len(delta)
        if self._every > 0 and self._since >= self._every:
            self._since = 0
            return True
        return False

    @property
    def raw_text(self) -> str:
        """The answer exactly as the provider sent it."""
        if self._raw is None:
            self._raw = "".join(self._parts)
            self._parts = [self._raw]  # keep joins linear over a long stream
        return self._raw

    @property
    def text(self) -> str:
        """The answer so far, normalised: the text findings' offsets refer to."""
        if self._normalised is None:
            self._normalised = self._inspector.normalise(self.raw_text)
        return self._normalised

    def findings(self) -> list[Finding]:
        return self._inspector.inspect([self.text])

    def types(self) -> list[str]:
        return sorted({f.type for f in self.findings()})
