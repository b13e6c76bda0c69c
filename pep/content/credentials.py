"""Credential detectors: provider API keys, bearer tokens, private keys (all type api_key /
private_key). The detector name in a finding says which format matched (openai, aws, ...).
"""

from __future__ import annotations

import re

from pep.content.detectors import Detector, Gate, RegexDetector

Hit = tuple[int, int, str] | None

# One cheap search decides whether the full key pattern runs at all: the distinctive
# character of every prefix ("-" of sk-/xoxb-, "_" of ghp_/sk_live_, "J" of eyJ, "A" of
# AKIA/AIza), then the prefix checked behind it. Prose and ordinary code never match.
_KEY_HINT = (
    r"[-_AJ](?:(?<=\bsk-)|(?<=\b[sr]k_)|(?<=\bgh[pousr]_)|(?<=\bxox[abeoprs]-)"
    r"|(?<=github_pat_)|(?<=\beyJ)|(?<=\bA)(?:KIA|SIA|BIA|CCA|Iza))"
)
_LONGEST_PREFIX = len("github_pat_")

_API_KEY = (
    r"(?<![A-Za-z0-9_-])(?:"
    r"(?P<anthropic>sk-ant-[A-Za-z0-9_-]{20,})"
    r"|(?P<openai>sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,})"
    r"|(?P<stripe>[rs]k_(?:live|test)_[A-Za-z0-9]{16,})"
    r"|(?P<aws_access_key>(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16})"
    r"|(?P<github>gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,})"
    r"|(?P<slack>xox[abeoprs]-[A-Za-z0-9-]{10,})"
    r"|(?P<google>AIza[A-Za-z0-9_-]{35})"
    r"|(?P<jwt>eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)"
    r")(?![A-Za-z0-9_-])"
)
_DIGIT = r"[0-9]"
_ALPHA = r"[A-Za-z]"


def _key_gate_factory() -> Gate:
    hint = re.compile(_KEY_HINT)

    def gate(text: str, _digits: int) -> int | None:
        m = hint.search(text)
        return None if m is None else max(0, m.start() - _LONGEST_PREFIX)

    return gate


def _api_key(m: re.Match[str], _text: str) -> Hit:
    kind = m.lastgroup or "api_key"
    # Prose such as "sk-learn-is-a-library-for-machine-learning" has no digit; real keys do.
    if kind in ("openai", "anthropic", "slack") and re.search(_DIGIT, m.group()) is None:
        return None
    return m.start(), m.end(), kind


# "Authorization: Bearer <opaque token>": the token is a credential whatever its format.
_BEARER = r"[Bb](?i:earer)\s+(?P<token>[A-Za-z0-9._~+/-]{20,}=*)(?![A-Za-z0-9._~+/=-])"


def _bearer_gate(text: str, _digits: int) -> int | None:
    # The first "earer" in any case (the pattern takes "Bearer", "BEARER", "BeArEr"): a gate
    # that looked for fixed spellings let a mixed-case one, or a token before a later
    # lower-case "bearer", go unscanned. ASCII text lower-cases to the same length, so the
    # position is exact; otherwise lower() may lengthen the text before the match (U+0130
    # becomes two code points), so the whole text is scanned.
    folded = text.lower()
    at = folded.find("earer")
    if at < 0:
        return None
    return max(0, at - 1) if text.isascii() else 0


def _bearer(m: re.Match[str], text: str) -> Hit:
    if m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] == "_"):
        return None
    token = m.group("token")
    if re.search(_DIGIT, token) is None or re.search(_ALPHA, token) is None:
        return None
    return m.start("token"), m.end("token"), "bearer"


# PEM (PKCS#1/#8, EC, DSA, encrypted), OpenSSH and PGP private keys. Without an END line (a
# truncated paste) the finding runs to the end of the base64 body, so the key is still covered.
_PRIVATE_KEY = (
    r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----"
    r"(?:(?:(?!-----)[\s\S])*?-----END (?P=kind)PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:[ \t]*\r?\n?[ \t]*(?:[A-Za-z-]+:[^\n]*|[A-Za-z0-9+/=]{8,}))*)"
)


def _private_key_gate(text: str, _digits: int) -> int | None:
    at = text.find("-----BEGIN ")
    return None if at < 0 else at


def _private_key(m: re.Match[str], _text: str) -> Hit:
    return m.start(), m.end(), "pem"


def credential_detectors() -> tuple[Detector, ...]:
    return (
        RegexDetector("private_key", re.compile(_PRIVATE_KEY), _private_key_gate, _private_key),
        RegexDetector("api_key", re.compile(_API_KEY), _key_gate_factory(), _api_key),
        RegexDetector("api_key", re.compile(_BEARER), _bearer_gate, _bearer),
    )
