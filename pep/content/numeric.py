"""Number-shaped detectors: payment cards, US SSNs, IBANs, IP addresses, phone numbers.

All are gated on the count of ASCII digits in the (normalised) text: a prompt with fewer
digits than the smallest possible match never runs the pattern. Each pattern starts with a
character class; boundary checks live in the validators (see pep.content.detectors).
"""

from __future__ import annotations

import ipaddress
import re

from pep.content.checksums import IBAN_LENGTHS, iban_ok, payment_card_ok, us_ssn_ok
from pep.content.detectors import Detector, Gate, RegexDetector, min_digits, word_char_before

Hit = tuple[int, int, str] | None

# --- payment card ----------------------------------------------------------------------

# Contiguous, or grouped 4-4-4-4(-3), 4-6-5 (Amex), 4-6-4 (Diners) with one separator kind;
# the trailing optional groups also take in a following CVV/expiry, which ``_card`` drops.
_CARD = (
    r"[0-9](?:[0-9]{12,18}"
    r"|[0-9]{3}(?P<sep>[ .-])[0-9]{4,6}(?P=sep)[0-9]{4,5}"
    r"(?:(?P=sep)[0-9]{1,4})?(?:(?P=sep)[0-9]{1,4})?)"
    r"(?![0-9]|[.-][0-9])"
)


def _card(m: re.Match[str], text: str) -> Hit:
    if word_char_before(text, m.start(), ".-"):
        return None
    sep = m.group("sep")
    if sep is None:
        return (m.start(), m.end(), "luhn") if payment_card_ok(m.group()) else None
    # "DE89 3704 0044 ...": a group glued to more digits on the left is part of a longer
    # number (an IBAN, a phone number), not a card.
    if m.start() >= 2 and text[m.start() - 1] == sep and text[m.start() - 2].isdigit():
        return None
    groups = m.group().split(sep)
    while len(groups) >= 3:
        if payment_card_ok("".join(groups)):
            return m.start(), m.start() + len(sep.join(groups)), "luhn"
        groups.pop()
    return None


# --- US SSN ----------------------------------------------------------------------------

_SSN = r"[0-9][0-9]{2}(?P<sep>[ .-])[0-9]{2}(?P=sep)[0-9]{4}(?![\w]|[.-][0-9])"
# Nine bare digits are an SSN only right after the words that announce one.
_SSN_CONTEXT = (
    r"[Ss](?i:sn|ocial\s+security(?:\s+(?:number|no|num))?)\b[^0-9\n]{0,20}?"
    r"(?<![0-9])(?P<digits>[0-9]{9})(?![0-9])"
)
# The gate looks for the pattern's own opening (any case mix: "sSN" is the pattern's too).
_SSN_HINT = re.compile(r"[Ss](?i:sn|ocial)")


def _ssn(m: re.Match[str], text: str) -> Hit:
    s = m.group()
    if word_char_before(text, m.start(), ".-") or not us_ssn_ok(s[0:3], s[4:6], s[7:11]):
        return None
    return m.start(), m.end(), "ssn"


def _ssn_context_gate(text: str, digits: int) -> int | None:
    return 0 if digits >= 9 and _SSN_HINT.search(text) is not None else None


def _ssn_context(m: re.Match[str], text: str) -> Hit:
    d = m.group("digits")
    if word_char_before(text, m.start()) or not us_ssn_ok(d[:3], d[3:5], d[5:]):
        return None
    return m.start("digits"), m.end("digits"), "ssn_context"


# --- IBAN ------------------------------------------------------------------------------

# Anchored on the check digits (rarer than letters), the country code checked behind them.
# Contiguous, or printed in groups of four separated by single spaces.
_IBAN = (
    r"[0-9][0-9](?<=[A-Za-z]{2}[0-9]{2})"
    r"(?:[A-Za-z0-9]{11,30}|(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,4})?)"
)


def _iban(m: re.Match[str], text: str) -> Hit:
    start = m.start() - 2
    length = IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None or word_char_before(text, start):
        return None
    candidate = text[start : m.end()]
    # The greedy pattern may run into following words ("... 7034 from"): cut the candidate
    # at the country's length, which must fall on a boundary.
    seen = 0
    for i, ch in enumerate(candidate):
        if ch != " ":
            seen += 1
            if seen == length:
                end = start + i + 1
                break
    else:
        return None
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        return None
    return (start, end, "iban") if iban_ok(text[start:end].replace(" ", "").upper()) else None


# --- IP addresses ----------------------------------------------------------------------

_ASCII_DIGITS = frozenset("0123456789")
_IPV4 = r"[0-9][0-9]{0,2}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?![\w]|\.[0-9])"
_VERSION_BEFORE = r"(?i:version|ver\.?|release|build|firmware|v)\s*:?\s*$"


def _ipv4_gate(text: str, digits: int) -> int | None:
    # Prose has dots and digits, rarely a dot between two digits: find the first such dot
    # with str.find (memchr) and scan from just before it.
    if digits < 4:
        return None
    at = text.find(".", 1)
    last = len(text) - 1
    while 0 < at < last:
        if text[at - 1] in _ASCII_DIGITS and text[at + 1] in _ASCII_DIGITS:
            return max(0, at - 3)
        at = text.find(".", at + 1)
    return None


def _ipv4(m: re.Match[str], text: str) -> Hit:
    if word_char_before(text, m.start(), "."):
        return None
    for octet in m.group().split("."):
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0"):
            return None
    # "version 1.2.3.4" / "build 10.0.0.1" are version numbers, not hosts.
    # (Only candidates get here; re's own cache keeps the pattern compiled.)
    if re.search(_VERSION_BEFORE, text[max(0, m.start() - 16) : m.start()]):
        return None
    return m.start(), m.end(), "ipv4"


_IPV6 = (
    r"[0-9A-Fa-f:][0-9A-Fa-f]{0,3}:[0-9A-Fa-f:]*(?:\.[0-9]{1,3}){0,3}"
    r"(?P<zone>%[0-9A-Za-z]+)?(?![\w:])"
)
_HEX = frozenset("0123456789abcdefABCDEF")


def _ipv6_gate_factory() -> Gate:
    # Every IPv6 text form has "::" or a hex group between two colons; code and prose with
    # many colons rarely do. An address starts at most 39 characters before that point.
    hint = re.compile(r":[0-9A-Fa-f]{0,4}:")

    def gate(text: str, _digits: int) -> int | None:
        m = hint.search(text)
        return None if m is None else max(0, m.start() - 39)

    return gate


def _ipv6(m: re.Match[str], text: str) -> Hit:
    if word_char_before(text, m.start(), ":.%"):
        return None
    addr = m.group()[: m.start("zone") - m.start()] if m.group("zone") else m.group()
    # Shorter forms ("::1", "a::b", "x[1::2]") are loopback, C++ scopes or slices.
    if sum(1 for c in addr if c in _HEX) < 5 or len([g for g in addr.split(":") if g]) < 2:
        return None
    try:
        ipaddress.IPv6Address(addr)
    except ValueError:
        return None
    return m.start(), m.end(), "ipv6"


# --- phone -----------------------------------------------------------------------------

# The first character is consumed by a class (fast skip), then the branch is chosen by what
# it was: "+" or "00" international, "0" national trunk prefix, "1"/"(" /2-9 North American.
_INTL_TAIL = r"[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,6}"
_NANP_BODY = r"(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}"
_PHONE = (
    r"[+(0-9](?:"
    rf"(?<=\+)(?P<phone_intl>{_INTL_TAIL})"
    rf"|(?<=0)0(?P<phone_intl00>{_INTL_TAIL})"
    r"|(?<=0)(?P<phone_national>[1-9][0-9]{0,3}(?P<sep>[ .-])[0-9]{2,8}(?:(?P=sep)[0-9]{2,8}){1,3})"
    rf"|(?<=1)(?P<phone_nanp1>[ .-]?{_NANP_BODY})"
    r"|(?<=\()(?P<phone_nanp_paren>[2-9][0-9]{2}\) ?[0-9]{3}[ .-][0-9]{4})"
    r"|(?<=[2-9])(?P<phone_nanp>[0-9]{2}[ .-][0-9]{3}[ .-][0-9]{4})"
    r")(?![\w]|[.-]?[0-9])"
)
_NON_DIGITS = str.maketrans("", "", " .-()+/")
# Digits allowed per form (E.164 allows at most 15 including the country code).
_PHONE_FORMS = {
    "phone_intl": ("phone_intl", 8, 15),
    "phone_intl00": ("phone_intl", 10, 17),
    "phone_national": ("phone_national", 9, 12),
    "phone_nanp1": ("phone_nanp", 11, 11),
    "phone_nanp_paren": ("phone_nanp", 10, 10),
    "phone_nanp": ("phone_nanp", 10, 10),
}


def _phone(m: re.Match[str], text: str) -> Hit:
    if word_char_before(text, m.start(), "+"):
        return None
    name, low, high = _PHONE_FORMS[m.lastgroup or "phone_intl"]
    n = len(m.group().translate(_NON_DIGITS))
    return (m.start(), m.end(), name) if low <= n <= high else None


def numeric_detectors() -> tuple[Detector, ...]:
    return (
        RegexDetector("payment_card", re.compile(_CARD), min_digits(13), _card),
        RegexDetector("iban", re.compile(_IBAN), min_digits(10), _iban),
        RegexDetector("us_ssn", re.compile(_SSN), min_digits(9), _ssn),
        RegexDetector("us_ssn", re.compile(_SSN_CONTEXT), _ssn_context_gate, _ssn_context),
        RegexDetector("ip_address", re.compile(_IPV4), _ipv4_gate, _ipv4),
        RegexDetector("ip_address", re.compile(_IPV6), _ipv6_gate_factory(), _ipv6),
        RegexDetector("phone", re.compile(_PHONE), min_digits(8), _phone),
    )
