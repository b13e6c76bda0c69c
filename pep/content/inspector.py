"""ContentInspector: findings for input.content, and the masking behind the redact obligation.

Build one per process (``ContentInspector(settings.content)``): every pattern is compiled in
the constructor and nothing is set up per call. All methods are safe to call concurrently.

Offsets in findings are in the *normalised* text of a message (``normalise``). Redaction
therefore forwards the normalised text of a message in which it masked something: masking
spans of the normalised form inside the original would be wrong, and forwarding the original
around the masks would let obfuscated content (zero-width characters, fullwidth digits)
reach the provider.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pep.content.detectors import FINDING_TYPES, PRIORITY, Detector, Span, build_detectors
from pep.content.encoded import EncodedRuns
from pep.content.normalise import Normaliser
from pep.content.output import OutputScanner
from pep.content.settings import ContentSettings
from pep.content.walk import Site, walk
from pep.errors import PayloadTooLarge, Unavailable
from pep.policy.contract import ContentInput, Finding

_DROP_DIGITS = str.maketrans("", "", "0123456789")


@dataclass(frozen=True, slots=True)
class ContentScan:
    """One inspection: the normalised texts the offsets refer to, and the findings."""

    texts: list[str]
    findings: list[Finding] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return sorted({f.type for f in self.findings})

    def to_input(self) -> ContentInput:
        return ContentInput(findings=self.findings, types=self.types)


@dataclass(frozen=True, slots=True)
class RequestScan:
    """One inspection of a whole canonical request (``scan_request``): the body to forward
    (invisible characters stripped in strip mode), the normalised message texts
    (request.messages[i].text) and the findings over every forwarded client string."""

    body: dict[str, Any]
    texts: list[str]
    findings: list[Finding] = field(default_factory=list)


class ContentInspector:
    def __init__(self, settings: ContentSettings) -> None:
        self._settings = settings
        self._normaliser = Normaliser()
        self._detectors = build_detectors()
        wanted = set(settings.types) if settings.enabled else set()
        self._reported = tuple(d for d in self._detectors if d.type in wanted)
        self._report_invisible = "invisible_text" in wanted
        self._strip = settings.invisible == "strip"
        self._masks = {t: settings.mask.format(TYPE=t.upper(), type=t) for t in FINDING_TYPES}
        self._decoder = EncodedRuns(settings) if settings.decode_encoded else None
        # Detector subsets per redact type set; at most 2**9 keys, filled on first use.
        self._subsets: dict[frozenset[str], tuple[Detector, ...]] = {}

    @property
    def known_types(self) -> frozenset[str]:
        return FINDING_TYPES

    def normalise(self, text: str) -> str:
        return self._normaliser.normalise(text)

    # --- inspection ----------------------------------------------------------------------

    def inspect(self, texts: list[str]) -> list[Finding]:
        """Findings over message texts (in order); offsets are in each normalised text."""
        return self.scan(texts).findings

    def scan(self, texts: list[str]) -> ContentScan:
        """Like ``inspect``, also returning the normalised texts (what the policy should see
        as request.messages[i].text so that offsets line up)."""
        self._check_size(sum(map(len, texts)))
        normalised = [self.normalise(t) for t in texts]
        findings: list[Finding] = []
        if self._reported:
            for index, text in enumerate(normalised):
                for span in self._spans(text, self._reported):
                    findings.append(_finding(span, index))
        return ContentScan(normalised, findings)

    def scan_request(self, body: dict[str, Any], api: str, n_texts: int) -> RequestScan:
        """Inspect every forwarded client string of a canonical request (pep.content.walk):
        findings carry their location; message text findings index request.messages[i].text
        (the normalised parts joined with newlines) as before."""
        parts: list[list[str]] = [[] for _ in range(n_texts)]
        bases = [0] * n_texts
        findings: list[Finding] = []
        chars = 0
        reported = self._reported

        def visit(site: Site, text: str) -> str | None:
            nonlocal chars
            chars += len(text)
            if chars > self._settings.max_chars:
                self._check_size(chars)
            stripped = self._normaliser.strip(text)
            if stripped is not text and stripped != text and self._report_invisible:
                for offset, kind in self._normaliser.invisible_runs(text):
                    findings.append(_located(site, "invisible_text", offset, offset, kind, 0))
            normalised = self.normalise(stripped)
            base = 0
            i = site.message_index
            if site.content and 0 <= i < n_texts:
                base = bases[i]
                parts[i].append(normalised)
                bases[i] += len(normalised) + 1  # the "\n" the parts are joined with
            if reported and normalised:
                for span in self._spans(normalised, reported):
                    findings.append(_located(site, span.type, span.start, span.end,
                                             span.detector, base if site.content else 0))
            return stripped if self._strip and stripped is not text else None

        forwarded = walk(body, api, visit)
        texts = ["\n".join(p) for p in parts]
        return RequestScan(forwarded, texts, findings)

    def _check_size(self, chars: int) -> None:
        if chars > self._settings.max_chars:
            raise PayloadTooLarge(
                f"request text exceeds {self._settings.max_chars} characters, the most this "
                "gateway inspects per request",
                code="content_too_large",
            )

    def spans(self, normalised_text: str, types: Iterable[str] | None = None) -> list[Span]:
        """Raw spans over an already normalised text (all known types when ``types`` is None)."""
        detectors = self._detectors if types is None else self._for_types(types)
        return self._spans(normalised_text, detectors)

    def _spans(self, text: str, detectors: tuple[Detector, ...]) -> list[Span]:
        if not text or not detectors:
            return []
        # One byte per character, for the fold gate and the encoded-run search.
        view = text.encode("ascii", "replace")
        # Confusables folded one for one, so the spans index ``text`` itself.
        folded = self._normaliser.fold(text, view)
        spans = _detect(folded, detectors)
        if self._decoder is not None:
            spans.extend(self._decoder.spans(folded, lambda t: _detect(
                self._normaliser.fold(self.normalise(t)), detectors),
                view if folded is text else None))
        return _resolve_overlaps(spans) if len(spans) > 1 else spans

    def _for_types(self, types: Iterable[str]) -> tuple[Detector, ...]:
        key = frozenset(types)
        found = self._subsets.get(key)
        if found is None:
            unknown = key - FINDING_TYPES
            if unknown:
                # A policy believing it masks something the PEP cannot find must not pass
                # silently (like an unknown obligation): fail closed.
                raise Unavailable(
                    f"redact obligation names unknown finding types: {sorted(unknown)}",
                    code="unknown_obligation",
                )
            found = tuple(d for d in self._detectors if d.type in key)
            self._subsets[key] = found
        return found

    # --- redaction -----------------------------------------------------------------------

    def redact(self, text: str, types: set[str] | frozenset[str]) -> tuple[str, int]:
        """Mask every finding of ``types``. Returns (text, count); when count > 0 the text is
        the normalised form with masks, otherwise the original text unchanged. Redacting
        ``invisible_text`` removes invisible characters (counted as one per string)."""
        detectors = self._for_types(types)
        if not text:
            return text, 0
        removed = 0
        if "invisible_text" in types:
            stripped = self._normaliser.strip(text)
            if stripped != text:
                text, removed = stripped, 1
        if not detectors:
            return text, removed
        normalised = self.normalise(text)
        spans = self._spans(normalised, detectors)
        if not spans:
            return text, removed
        out: list[str] = []
        pos = 0
        for span in spans:
            out.append(normalised[pos : span.start])
            out.append(self._masks[span.type])
            pos = span.end
        out.append(normalised[pos:])
        return "".join(out), len(spans) + removed

    def redact_request(
        self, body: dict[str, Any], api: str, types: set[str] | frozenset[str]
    ) -> tuple[dict[str, Any], int]:
        """Apply ``redact`` to every forwarded client string of a canonical request (the
        same walk as ``scan_request``). Unchanged parts are returned as the same objects."""
        self._for_types(types)  # unknown types fail even when there is nothing to mask
        total = 0

        def visit(_site: Site, text: str) -> str | None:
            nonlocal total
            new, count = self.redact(text, types)
            total += count
            return new if count else None

        return walk(body, api, visit), total

    def redact_messages(
        self, messages: list[dict[str, Any]], types: set[str] | frozenset[str]
    ) -> tuple[list[dict[str, Any]], int]:
        """Redact OpenAI-style messages (every client string in them, tool calls included).
        The input is not modified; unchanged messages are returned as the same objects."""
        body, total = self.redact_request({"messages": messages}, "chat.completions", types)
        return body["messages"], total

    # --- model output --------------------------------------------------------------------

    def output_scanner(self, check_every_chars: int) -> OutputScanner:
        """Per-request accumulator for the output decision (see pep.content.output)."""
        return OutputScanner(self, check_every_chars)


def _detect(text: str, detectors: tuple[Detector, ...]) -> list[Span]:
    # One C-level pass; every number detector's gate is a comparison against it.
    if text.isascii():  # O(1); translate has a fast path for ASCII only
        digits = len(text) - len(text.translate(_DROP_DIGITS))
    else:
        digits = sum(map(text.count, "0123456789"))
    spans: list[Span] = []
    for detector in detectors:
        spans.extend(detector.find(text, digits))
    return spans


def _located(site: Site, kind: str, start: int, end: int, detector: str, base: int) -> Finding:
    return Finding(
        type=kind,
        message_index=site.message_index if site.content else -1,
        start=start + base,
        end=end + base,
        detector=f"builtin:{detector}",
        location=site.location,
    )


def _finding(span: Span, index: int) -> Finding:
    # Plain construction: pydantic-core validation of five scalars is faster than
    # model_construct's Python-level path.
    return Finding(
        type=span.type,
        message_index=index,
        start=span.start,
        end=span.end,
        detector=f"builtin:{span.detector}",
    )


def _resolve_overlaps(spans: list[Span]) -> list[Span]:
    """Keep the highest-priority (then longest, then first) of overlapping spans, in order.
    O(k log k): kept spans never overlap, so only the two neighbours of the insertion point
    can conflict (a text with thousands of findings must not cost k**2)."""
    ranked = sorted(spans, key=lambda s: (-PRIORITY[s.type], s.start - s.end, s.start))
    kept: list[Span] = []  # sorted by start, pairwise disjoint
    for span in ranked:
        at = bisect.bisect_left(kept, span)
        if at > 0 and kept[at - 1].end > span.start:
            continue
        if at < len(kept) and kept[at].start < span.end:
            continue
        kept.insert(at, span)
    return kept
