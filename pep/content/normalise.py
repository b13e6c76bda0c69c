"""Text normalisation run before every detector, so trivial obfuscation does not hide content.

Steps (docs/content-inspection.md explains each):
1. remove invisible characters: every format character (Unicode category Cf: zero-width
   space/joiners, bidi embeddings/overrides/isolates, soft hyphen, word joiner, BOM, tag
   characters used for "ASCII smuggling"), Hangul fillers, variation selectors (used to
   smuggle bytes after an emoji), and C0/C1 control characters except tab, LF and CR;
2. map every Unicode hyphen/dash/minus to "-" and every non-ASCII decimal digit (Arabic-Indic,
   Devanagari, ...) to its ASCII digit, so "٤١١١" is the number 4111 to the detectors too;
3. NFKC (fullwidth "４１１１＠ｅｘａｍｐｌｅ．ｃｏｍ", ligatures, compatibility spaces);
4. remove combining marks left on ASCII characters after composition ("a̲l̲i̲c̲e̲").

Two more views exist beside ``normalise``:

* ``strip`` does step 1 only. It is what the gateway forwards (``content.invisible: strip``):
  the provider must receive the text that was inspected, and a hidden instruction written in
  tag characters or a secret split by zero-width spaces must not travel past the checks.
* ``fold`` maps Unicode TR39 confusables of ASCII (Cyrillic "о", Greek "ο", ...) to their
  ASCII prototype, one character for one, so offsets do not move. It is for detection only:
  forwarding it would turn Russian prose into Latin gibberish. The table comes from the
  ``confusable-homoglyphs`` package (Unicode's confusables.txt, maintained upstream and
  regenerated per Unicode release) rather than a hand-written list.

Pure ASCII text without control characters is returned as is (the same object): NFKC is the
identity on ASCII, and that is the common case, so it costs one ``isascii`` and one search.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources

import orjson

# Unicode 14 Cf, listed rather than computed so nothing is scanned at start-up; plus the
# invisible non-Cf characters attackers use (Hangul fillers, Khmer inherent vowels,
# combining grapheme joiner, variation selectors).
_INVISIBLE_BMP = (
    "\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u115f\u1160\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f"
    "\ufeff\uffa0\ufff9-\ufffb"
)
_INVISIBLE_ASTRAL = (
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_INVISIBLE = _INVISIBLE_BMP + _INVISIBLE_ASTRAL
_ASCII_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
_CONTROLS = _ASCII_CONTROLS + "\x80-\x9f"
# Hyphen-like characters (not the em dash of prose): what a number can be written with.
_DASHES = "\u2010-\u2013\u2212\ufe63\uff0d"
_COMBINING = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"


# The zero of every non-ASCII run of decimal digits (Unicode 14 category Nd; each run is the
# ten digits 0-9 in order). Listed so the table is built without scanning the code space.
_DIGIT_ZEROS = (
    0x660, 0x6F0, 0x7C0, 0x966, 0x9E6, 0xA66, 0xAE6, 0xB66, 0xBE6, 0xC66, 0xCE6, 0xD66, 0xDE6,
    0xE50, 0xED0, 0xF20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10, 0x104A0, 0x10D30, 0x11066, 0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0,
    0x11650, 0x116C0, 0x11730, 0x118E0, 0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0,
    0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0,
)  # fmt: skip


def _expand(ranges: str) -> list[int]:
    """Code points of a character-class body such as "\u200b-\u200f\u2060"."""
    points: list[int] = []
    # One match per item, left to right: "a-b" (a range) or one character; a "-" that
    # closes the body is a character. No index arithmetic, so no way to loop forever.
    for m in _CLASS_ITEM.finditer(ranges):
        lo, hi, single = m.groups()
        if single is None:
            points.extend(range(ord(lo), ord(hi) + 1))
        else:
            points.append(ord(single))
    return points


_CLASS_ITEM = re.compile(r"(.)-(.)|(.)", re.DOTALL)


_BIDI = frozenset(range(0x202A, 0x202F)) | frozenset(range(0x2066, 0x206A)) | {0x200E, 0x200F,
                                                                              0x061C}
_ZERO_WIDTH = frozenset({0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0x180E})


def invisible_kind(ch: str) -> str:
    """The detector name of an invisible_text finding: what kind of character hid text."""
    cp = ord(ch)
    if 0xE0000 <= cp <= 0xE007F:
        return "unicode_tag"
    if cp in _ZERO_WIDTH:
        return "zero_width"
    if cp in _BIDI:
        return "bidi_control"
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:
        return "variation_selector"
    if cp < 0x20 or 0x7F <= cp <= 0x9F:
        return "control"
    return "format"


@lru_cache(maxsize=1)
def confusable_table() -> dict[int, str]:
    """Non-ASCII character -> its single-ASCII-character TR39 prototype (confusables.txt via
    confusable-homoglyphs). Loaded once per process, on first use."""
    raw = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_bytes()
    table: dict[int, str] = {}
    for char, entries in orjson.loads(raw).items():
        if len(char) != 1 or char.isascii():
            continue
        targets = {e["c"] for e in entries
                   if len(e["c"]) == 1 and e["c"].isascii() and e["c"].isprintable()}
        if len(targets) == 1:
            table[ord(char)] = targets.pop()
    return table


# For fold(): ASCII letters, digits, "@" and "_" -> b"a" (not "." or "-": they follow
# words of any script), "?" (what encode(..., "replace") makes
# of a non-ASCII character, and a literal "?": a false positive only costs a fold) -> b"q".
_MIX_TABLE = bytes(
    ord("a") if chr(b).isalnum() and b < 128 or chr(b) in "@_" else
    ord("q") if b == ord("?") else ord(" ")
    for b in range(256)
)


class Normaliser:
    """Precompiled; ``normalise`` is safe to call concurrently (no mutable state)."""

    def __init__(self) -> None:
        table: dict[int, str | None] = dict.fromkeys(_expand(_INVISIBLE + _CONTROLS))
        table.update(dict.fromkeys(_expand(_DASHES), "-"))
        for zero in _DIGIT_ZEROS:
            table.update({zero + d: str(d) for d in range(10)})
        self._table = table
        bmp_digits = "".join(f"{chr(z)}-{chr(z + 9)}" for z in _DIGIT_ZEROS if z < 0x10000)
        astral_digits = "".join(f"{chr(z)}-{chr(z + 9)}" for z in _DIGIT_ZEROS if z >= 0x10000)
        # Single character classes, so the common case (nothing to fix) costs one scan. The
        # BMP class compiles to a bitmap (constant time per character); ranges beyond U+FFFF
        # are a list tested one by one, so that class only runs on text that has such
        # characters at all (max() is one C pass).
        self._fix_bmp = re.compile(f"[{_INVISIBLE_BMP}{_CONTROLS}{_DASHES}{bmp_digits}]+")
        self._any_astral = re.compile("[\U00010000-\U0010ffff]")
        self._fix_astral = re.compile(f"[{_INVISIBLE_ASTRAL}{astral_digits}]+")
        self._ascii_controls = re.compile(f"[{_ASCII_CONTROLS}]")
        self._any_mark = re.compile(f"[{_COMBINING}]")
        self._marks = re.compile(f"(?<=[\\x21-\\x7e])[{_COMBINING}]+")
        self._strip_bmp = re.compile(f"[{_INVISIBLE_BMP}{_CONTROLS}]+")
        self._strip_astral = re.compile(f"[{_INVISIBLE_ASTRAL}]+")
        self._strip_all = re.compile(f"[{_INVISIBLE}{_CONTROLS}]+")
        folds = confusable_table()
        # A dict (~70 ns/char in str.translate): fold only runs on mixed-script text (the
        # gate below), so a faster 65,536-entry list table is not worth its 2 MB per process.
        self._fold_table = folds
        self._foldable = re.compile(
            "[" + "".join(re.escape(chr(c)) for c in sorted(folds)) + "]")

    def normalise(self, text: str) -> str:
        if text.isascii():
            if self._ascii_controls.search(text) is None:
                return text
            return self._ascii_controls.sub("", text)
        text = self._fix(text)
        if not unicodedata.is_normalized("NFKC", text):
            # NFKC can produce characters the table maps (e.g. U+2011 -> U+2010).
            text = self._fix(unicodedata.normalize("NFKC", text))
        if self._any_mark.search(text) is not None:
            text = self._marks.sub("", text)
        return text

    def strip(self, text: str) -> str:
        """Remove invisible characters only (step 1): what is forwarded in strip mode."""
        if text.isascii():
            if self._ascii_controls.search(text) is None:
                return text
            return self._ascii_controls.sub("", text)
        text = self._strip_bmp.sub("", text)
        if self._any_astral.search(text) is not None:
            text = self._strip_astral.sub("", text)
        return text

    def invisible_runs(self, text: str) -> Iterator[tuple[int, str]]:
        """(offset in ``strip(text)``, kind) of each run of invisible characters. Only called
        on text that ``strip`` changed (rare), so the slower all-planes class is fine here."""
        removed = 0
        for m in self._strip_all.finditer(text):
            yield m.start() - removed, invisible_kind(m.group()[0])
            removed += m.end() - m.start()

    def fold(self, text: str, ascii_view: bytes | None = None) -> str:
        """TR39 confusables of ASCII -> ASCII, length-preserving (detection only).

        Only text in which a non-ASCII character touches an ASCII letter, digit, "@" or "_"
        is folded: every detector needs such ASCII anchors, and disguised content
        mixes scripts ("ѕk-proj", "аlice@"), while prose in one script (Russian, Greek) is
        left alone at the cost of one encode and translate (~1 ns/char)."""
        if text.isascii():
            return text
        if ascii_view is None:
            ascii_view = text.encode("ascii", "replace")
        mixed = ascii_view.translate(_MIX_TABLE)
        if b"aq" not in mixed and b"qa" not in mixed:
            return text
        if self._foldable.search(text) is None:
            return text
        return text.translate(self._fold_table)

    def _fix(self, text: str) -> str:
        # sub() only calls back for the (rare) runs it finds; translating the whole text
        # through the dict table would cost a lookup per character.
        text = self._fix_bmp.sub(self._translate_run, text)
        if self._any_astral.search(text) is not None:
            text = self._fix_astral.sub(self._translate_run, text)
        return text

    def _translate_run(self, m: re.Match[str]) -> str:
        return m.group().translate(self._table)
