"""Time and glob builtins where regorus 0.13 disagrees with OPA (Go's ``time`` package and
``gobwas/glob``), each pinned by conformance cases.

- ``time.add_date``: Go normalises overflowing days (31 January + 1 month = 3 March;
  29 February + 1 year = 1 March); regorus clamped or failed.
- ``time.parse_rfc3339_ns``: Go's RFC 3339 layout is strict (upper-case ``T``/``Z``, no
  space, no leap second, ``+hh:mm`` offsets); regorus accepted more.
- ``glob.match``: ``*`` stops at delimiters, ``**`` crosses them, ``[]`` means the default
  delimiter ``.``, ``null`` none; ``{a,b}`` alternatives; an empty delimiter is an error.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from pep.policy.builtins_text import BuiltinError, number, text

_NS = 1_000_000_000
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _int(value: Any, fn: str) -> int:
    value = number(value, fn)
    if isinstance(value, float):
        if not value.is_integer():
            raise BuiltinError(f"{fn}: operand must be an integer")
        value = int(value)
    return int(value)


def add_date(ns: Any, years: Any, months: Any, days: Any) -> int:
    fn = "time.add_date"
    ns, years, months, days = (_int(v, fn) for v in (ns, years, months, days))
    secs, frac = divmod(ns, _NS)
    t = datetime.fromtimestamp(secs, UTC) if -62135596800 <= secs < 253402300800 else None
    if t is None:
        raise BuiltinError(f"{fn}: time outside of valid range")
    # Go's Date(): normalise month, then let the day overflow into the following months.
    y, m = divmod(t.month - 1 + months, 12)
    year, month = t.year + years + y, m + 1
    if not 1 <= year <= 9999:
        raise BuiltinError(f"{fn}: time outside of valid range")
    base = calendar.timegm((year, month, 1, t.hour, t.minute, t.second))
    out: int = (base + (t.day - 1 + days) * 86400) * _NS + frac
    if not _INT64[0] <= out <= _INT64[1]:
        raise BuiltinError(f"{fn}: time outside of valid range")
    return out


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:\d{2})"
)


def parse_rfc3339_ns(value: Any) -> int:
    fn = "time.parse_rfc3339_ns"
    m = _RFC3339.fullmatch(text(value, fn))
    if m is None:
        raise BuiltinError(f"{fn}: cannot parse {value!r} as RFC 3339")
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
            and hour < 24 and minute < 60 and sec < 60):
        raise BuiltinError(f"{fn}: value out of range")
    frac = int((m.group(7) or "0")[:9].ljust(9, "0"))
    zone = m.group(8)
    offset = 0
    if zone != "Z":
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh >= 24 or om >= 60:
            raise BuiltinError(f"{fn}: bad time zone offset")
        offset = (oh * 3600 + om * 60) * (1 if zone[0] == "+" else -1)
    out = (calendar.timegm((year, month, day, hour, minute, sec)) - offset) * _NS + frac
    if not _INT64[0] <= out <= _INT64[1]:
        raise BuiltinError(f"{fn}: time outside of valid range")
    return out


@lru_cache(maxsize=512)
def _glob(pattern: str, delimiters: tuple[str, ...]) -> re.Pattern[str]:
    """gobwas/glob compiled to a Python regex (both anchored)."""
    sep = "".join(re.escape(d) for d in delimiters)
    single = f"[^{sep}]" if sep else "."
    out: list[str] = []
    i, depth = 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                raise BuiltinError("glob.match: unexpected end of pattern")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append(f"{single}*")
                i += 1
            continue
        if c == "?":
            out.append(single)
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise BuiltinError("glob.match: unclosed character class")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            if not body:
                raise BuiltinError("glob.match: empty character class")
            cls = "".join(re.escape(ch) if ch != "-" else "-" for ch in body)
            out.append(f"[{'^' if negate else ''}{cls}]")
            i = end + 1
            continue
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    if depth:
        raise BuiltinError("glob.match: unclosed alternatives")
    return re.compile("".join(out), re.DOTALL)


def glob_match(pattern: Any, delimiters: Any, match: Any) -> bool:
    fn = "glob.match"
    pattern, match = text(pattern, fn), text(match, fn)
    if delimiters is None:
        delims: tuple[str, ...] = ()
    elif isinstance(delimiters, list):
        delims = tuple(text(d, fn) for d in delimiters) or (".",)
        if any(not d for d in delims):
            raise BuiltinError(f"{fn}: empty delimiter")
    else:
        raise BuiltinError(f"{fn}: delimiters must be an array or null")
    return _glob(pattern, delims).fullmatch(match) is not None


TIME_EXTENSIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "time.add_date": (4, add_date),
    "time.parse_rfc3339_ns": (1, parse_rfc3339_ns),
    "glob.match": (3, glob_match),
}
