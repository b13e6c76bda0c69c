"""Checksums and issuing rules that turn a digit pattern into a finding.

Hand-written on purpose: each is a few lines, runs only on a regex candidate, and a library
(python-stdnum, phonenumbers) would add an import and per-call overhead for no extra rules
we use. Every function takes only ASCII digits/letters (the detectors' groups guarantee it).
"""

from __future__ import annotations

# ISO 13616 lengths from the SWIFT IBAN registry. A code not listed is not an IBAN.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Numbers the SSA voided after they were printed in advertising (Woolworth wallet card, ...).
_VOIDED_SSNS = frozenset({"078051120", "219099999", "457555462"})


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_prefix_ok(digits: str) -> bool:
    """Issuer ranges of the networks in use (Visa, Mastercard, Amex, Discover, JCB, Diners,
    UnionPay, Maestro): a Luhn-valid order number starting with 1, 7, 8, 9 or 0 is not a card."""
    first = digits[0]
    if first == "4" or first == "5" or first == "6":
        return True
    if first == "3":
        return digits[1] in "04678" or "3528" <= digits[:4] <= "3589"
    if first == "2":
        return "2221" <= digits[:4] <= "2720"
    return False


def payment_card_ok(digits: str) -> bool:
    return (
        13 <= len(digits) <= 19
        and digits.count(digits[0]) != len(digits)
        and card_prefix_ok(digits)
        and luhn_ok(digits)
    )


def us_ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: area 000, 666 and 900-999 are never issued, nor group 00 or serial 0000."""
    if area == "000" or area == "666" or area[0] == "9":
        return False
    if group == "00" or serial == "0000":
        return False
    return area + group + serial not in _VOIDED_SSNS


def iban_ok(compact: str) -> bool:
    """``compact``: upper-case, no spaces. Length for the country, then ISO 7064 mod 97-10."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    # int(c, 36) maps 0-9 -> 0-9 and A-Z -> 10-35, exactly the IBAN letter conversion.
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
