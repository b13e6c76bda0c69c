"""OutputScanner: accumulates a model answer for the optional output decision.

One per request (``inspector.output_scanner(check_every_chars)``). The pipeline feeds every
text delta; ``feed`` returns True when at least ``check_every_chars`` characters arrived since
the last due check (0 or less: never by size, only when the caller's time bound or the end of
the stream asks). ``text`` and ``findings()`` describe the whole answer so far in normalised
form, as message_index 0, so the spans index ``text`` -- exactly what input.output carries.

Incremental, so a stream's scanning cost stays linear in its length: each delta is
normalised once when it is first read, and ``findings()`` scans only the text added since
the previous call plus an overlap of ``OVERLAP`` characters (longer than any detector's
span except a PEM block or a long token) and, when a finding ran to the end of the previous
scan, from that finding's start (up to ``LOOKBACK`` characters back), so a key longer than the
overlap that a check cut in two is reported whole. Findings that start before the rescanned
region are kept from earlier scans; new ones that overlap a kept one are dropped, so a
finding is reported once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pep.policy.contract import Finding

if TYPE_CHECKING:
    from pep.content.inspector import ContentInspector

OVERLAP = 1024
LOOKBACK = 64 * 1024


class OutputScanner:
    __slots__ = ("_every", "_findings", "_inspector", "_norm", "_normalised", "_pending",
                 "_raw", "_raw_parts", "_scanned", "_since")

    def __init__(self, inspector: ContentInspector, check_every_chars: int) -> None:
        self._inspector = inspector
        self._every = check_every_chars
        self._raw_parts: list[str] = []
        self._raw: str | None = ""
        self._pending: list[str] = []  # deltas not normalised yet
        self._norm: list[str] = []  # normalised deltas
        self._normalised: str | None = ""
        self._since = 0
        self._scanned = 0  # length of the normalised text the last findings() covered
        self._findings: list[Finding] = []

    def feed(self, delta: str) -> bool:
        """Add a chunk of answer text; True when a check is due by size."""
        if not delta:
            return False
        self._raw_parts.append(delta)
        self._pending.append(delta)
        self._raw = self._normalised = None
        self._since += len(delta)
        if self._every > 0 and self._since >= self._every:
            self._since = 0
            return True
        return False

    def checked(self) -> None:
        """The caller ran a check now (time bound or end): restart the size count."""
        self._since = 0

    @property
    def raw_text(self) -> str:
        """The answer exactly as the provider sent it."""
        if self._raw is None:
            self._raw = "".join(self._raw_parts)
            self._raw_parts = [self._raw]  # keep joins linear over a long stream
        return self._raw

    @property
    def text(self) -> str:
        """The answer so far, normalised: the text findings' offsets refer to."""
        if self._normalised is None:
            if self._pending:
                self._norm.append(self._inspector.normalise("".join(self._pending)))
                self._pending = []
            self._normalised = "".join(self._norm)
            self._norm = [self._normalised]
        return self._normalised

    def findings(self) -> list[Finding]:
        text = self.text
        if len(text) == self._scanned:
            return list(self._findings)
        region = max(0, self._scanned - OVERLAP)
        # A finding that ran to the end of the last scan may go on in the new text (a key or
        # PEM block longer than the overlap, cut by a check): scan again from its start, so
        # it is reported whole, but from no further back than LOOKBACK (a stream must not
        # make every check rescan an ever longer token).
        for f in self._findings:
            if f.end >= self._scanned:
                region = max(min(region, f.start), self._scanned - LOOKBACK)
        kept = [f for f in self._findings if f.start < region]
        limit = max((f.end for f in kept), default=0)
        for f in self._inspector.inspect([text[region:]]):
            start = f.start + region
            if start < limit:
                continue  # part of a finding an earlier scan already reported
            kept.append(f.model_copy(update={"start": start, "end": f.end + region}))
        self._findings = kept
        self._scanned = len(text)
        return list(kept)

    def types(self) -> list[str]:
        return sorted({f.type for f in self.findings()})
