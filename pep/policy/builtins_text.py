"""Python implementations of string, regex, number and encoding builtins where regorus 0.13
disagrees with OPA (each one pinned by a case in tests/policy/conformance).

Registered as extensions over the native names (an extension shadows a regorus builtin).
A raised ``BuiltinError`` is OPA's builtin error: undefined expression (``nonstrict``).
Regex semantics are Go's ``regexp`` (RE2): ``google-re2`` is RE2 itself, so ``\\w \\d \\s
\\b`` are ASCII and look-arounds are invalid, as in OPA.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from decimal import ROUND_FLOOR, Context, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import re2


class BuiltinError(ValueError):
    """A builtin error: OPA (non-strict) makes the calling expression undefined."""


def text(value: Any, fn: str) -> str:
    if not isinstance(value, str):
        raise BuiltinError(f"{fn}: operand must be a string")
    return value


def number(value: Any, fn: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BuiltinError(f"{fn}: operand must be a number")
    return value


# -- strings ---------------------------------------------------------------------------


def strings_count(s: Any, sub: Any) -> int:
    # Go's strings.Count: non-overlapping; an empty needle counts code points + 1.
    return text(s, "strings.count").count(text(sub, "strings.count"))


def count(x: Any) -> int:
    # regorus counts UTF-16 units of a string (an emoji is 2); OPA counts code points.
    if isinstance(x, (str, list, dict, set, frozenset)):
        return len(x)
    raise BuiltinError("count: operand must be an array, object, set or string")


def indexof(s: Any, sub: Any) -> int:
    hay, needle = text(s, "indexof"), text(sub, "indexof")
    if not needle:
        raise BuiltinError("indexof: empty search character")
    return hay.find(needle)


def indexof_n(s: Any, sub: Any) -> list[int]:
    hay, needle = text(s, "indexof_n"), text(sub, "indexof_n")
    if not needle:
        raise BuiltinError("indexof_n: empty search character")
    return [i for i in range(len(hay)) if hay.startswith(needle, i)]


def replace_n(patterns: Any, s: Any) -> str:
    """Go's strings.NewReplacer over the keys in sorted order: one pass, no re-matching."""
    if not isinstance(patterns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in patterns.items()
    ):
        raise BuiltinError("strings.replace_n: patterns must map strings to strings")
    s = text(s, "strings.replace_n")
    olds = sorted(patterns)  # argument order = priority (Go's genericReplacer)
    out: list[str] = []
    i, prev_empty = 0, False
    while i <= len(s):
        # An empty pattern matches once per position, never twice in a row.
        match = next((o for o in olds if (o or not prev_empty) and s.startswith(o, i)), None)
        prev_empty = match == ""
        if match is not None:
            out.append(patterns[match])
            i += len(match)
            continue
        if i < len(s):
            out.append(s[i])
        i += 1
    return "".join(out)


def _simple_case(c: str, mapped: str) -> str:
    # Go maps rune by rune (Unicode simple case mapping). Python's full mapping may expand
    # a character ("ß" -> "SS", "İ" -> "i" + U+0307); keep the base letter only when the
    # rest is combining marks, otherwise the character has no simple mapping.
    if len(mapped) == 1:
        return mapped
    if all(unicodedata.combining(m) for m in mapped[1:]):
        return mapped[0]
    return c


def upper(s: Any) -> str:
    return "".join(_simple_case(c, c.upper()) for c in text(s, "upper"))


def lower(s: Any) -> str:
    return "".join(_simple_case(c, c.lower()) for c in text(s, "lower"))


# -- regex (RE2, as Go) ----------------------------------------------------------------

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@lru_cache(maxsize=512)
def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        raise BuiltinError(f"invalid regex {pattern!r}") from exc


def _regex(pattern: Any, fn: str) -> Any:
    return _compile(text(pattern, fn))


def _matches(rx: Any, s: str, n: int) -> Iterator[Any]:
    """Go's Regexp.allMatches: successive matches; an empty match right after the previous
    match is skipped."""
    pos, found, prev_end = 0, 0, -1
    while (n < 0 or found < n) and pos <= len(s):
        m = rx.search(s, pos)
        if m is None:
            break
        accept = True
        if m.end() == pos:
            if m.start() == prev_end:
                accept = False
            pos += 1
        else:
            pos = m.end()
        prev_end = m.end()
        if accept:
            found += 1
            yield m


def regex_match(pattern: Any, value: Any) -> bool:
    return _regex(pattern, "regex.match").search(text(value, "regex.match")) is not None


def regex_is_valid(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    try:
        _compile(pattern)
    except BuiltinError:
        return False
    return True


def _count(n: Any, fn: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n):
        raise BuiltinError(f"{fn}: n must be an integer")
    return int(n)


def regex_find_n(pattern: Any, value: Any, n: Any) -> list[str]:
    rx, s = _regex(pattern, "regex.find_n"), text(value, "regex.find_n")
    return [m.group(0) for m in _matches(rx, s, _count(n, "regex.find_n"))]


def regex_find_all_string_submatch_n(pattern: Any, value: Any, n: Any) -> list[list[str]]:
    fn = "regex.find_all_string_submatch_n"
    rx, s = _regex(pattern, fn), text(value, fn)
    return [[g or "" for g in (m.group(0), *m.groups())] for m in _matches(rx, s, _count(n, fn))]


def regex_split(pattern: Any, value: Any) -> list[str]:
    """Go's Regexp.Split(s, -1)."""
    rx, s = _regex(pattern, "regex.split"), text(value, "regex.split")
    if pattern and not s:
        return [""]
    out: list[str] = []
    beg = end = 0
    for m in _matches(rx, s, -1):
        end = m.start()
        if m.end() != 0:
            out.append(s[beg:end])
        beg = m.end()
    if end != len(s):
        out.append(s[beg:])
    return out


_GO_TEMPLATE = re.compile(r"\$(\$|\{(\w+)\}|(\w+))")


def regex_replace(value: Any, pattern: Any, repl: Any) -> str:
    """Go's Regexp.ReplaceAllString ($1 / ${name} expansion)."""
    s, rx = text(value, "regex.replace"), _regex(pattern, "regex.replace")
    repl = text(repl, "regex.replace")
    out: list[str] = []
    last = 0
    for m in _matches(rx, s, -1):
        out.append(s[last:m.start()])

        def expand(t: re.Match[str], m: Any = m) -> str:
            if t.group(1) == "$":
                return "$"
            name = t.group(2) or t.group(3)
            try:
                group = m.group(int(name)) if name.isdigit() else m.group(name)
            except (IndexError, KeyError, re2.error):
                return ""
            return group or ""

        out.append(_GO_TEMPLATE.sub(expand, repl))
        last = m.end()
    out.append(s[last:])
    return "".join(out)


# -- numbers (OPA computes on exact decimals, not binary floats) -------------------------

_CTX = Context(prec=34)


def _dec(x: int | float) -> Decimal:
    return Decimal(x) if isinstance(x, int) else Decimal(repr(x))


def _num(d: Decimal) -> int | float:
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _sum(xs: Any, fn: str) -> list[Decimal]:
    if isinstance(xs, (list, set, frozenset)):
        return [_dec(number(x, fn)) for x in xs]
    raise BuiltinError(f"{fn}: operand must be an array or set")


def sum_(xs: Any) -> int | float:
    total = Decimal(0)
    for x in _sum(xs, "sum"):
        total = _CTX.add(total, x)
    return _num(total)


def product(xs: Any) -> int | float:
    total = Decimal(1)
    for x in _sum(xs, "product"):
        total = _CTX.multiply(total, x)
    return _num(total)


def _trunc(x: int | float) -> int:
    return int(_dec(x).to_integral_value(rounding="ROUND_DOWN"))


def floor_(x: Any) -> int:
    # OPA 1.9 rounds through big.Int truncation: floor(-0.5) == 0, floor(-1.5) == -2.
    if type(x) is int:
        return x
    x = number(x, "floor")
    if isinstance(x, int) or float(x).is_integer():
        return int(x)
    i = _trunc(x)
    return i - 1 if i < 0 else i


def ceil_(x: Any) -> int:
    # ... and ceil(-0.5) == 1, ceil(-1.5) == -1 (conformance case floor_neg).
    if type(x) is int:
        return x
    x = number(x, "ceil")
    if isinstance(x, int) or float(x).is_integer():
        return int(x)
    i = _trunc(x)
    return i + 1 if i >= 0 else i


def format_int(x: Any, base: Any) -> str:
    x = number(x, "format_int")
    if base not in (2, 8, 10, 16):
        raise BuiltinError("format_int: base must be one of 2, 8, 10, 16")
    d = _dec(x).to_integral_value(rounding=ROUND_FLOOR)
    i = int(d)
    digits = {2: "b", 8: "o", 10: "d", 16: "x"}[int(base)]
    return ("-" if i < 0 else "") + format(abs(i), digits)


def to_number(x: Any) -> int | float:
    if x is None:
        return 0
    if isinstance(x, bool):
        return 1 if x else 0
    if isinstance(x, (int, float)):
        return x
    s = text(x, "to_number")
    # Go's strconv.ParseFloat: no surrounding space, no hex without exponent, finite.
    if not re.fullmatch(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?", s):
        raise BuiltinError(f"to_number: invalid syntax {s!r}")
    try:
        d = Decimal(s)
    except InvalidOperation as exc:
        raise BuiltinError(f"to_number: invalid syntax {s!r}") from exc
    if not math.isfinite(float(d)):
        raise BuiltinError("to_number: value out of range")
    return _num(d)


# -- encodings ---------------------------------------------------------------------------


def base64_decode(s: Any) -> str:
    # Go's StdEncoding ignores \r and \n, nothing else; padding is required.
    raw = text(s, "base64.decode").replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError) as exc:
        raise BuiltinError("base64.decode: illegal base64 data") from exc


_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def urlquery_decode(s: Any) -> str:
    from urllib.parse import unquote_plus

    s = text(s, "urlquery.decode")
    if _PCT.search(s):
        raise BuiltinError("urlquery.decode: invalid URL escape")
    return unquote_plus(s, errors="replace")


def _scrub(value: Any) -> Any:
    """Go decodes a lone surrogate escape as U+FFFD; Rust strings cannot hold one."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace") \
            if any("\ud800" <= c <= "\udfff" for c in value) else value
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


# Go's decoder nests up to 10,000 levels; serde_json (regorus) stops at 128. Python's
# recursion limit is raised for the call so documents a few thousand levels deep decode.
_JSON_DEPTH = 5000


def json_unmarshal(s: Any) -> Any:
    doc = text(s, "json.unmarshal")
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _JSON_DEPTH))
    try:
        return _scrub(json.loads(doc, parse_constant=_no_constant))
    except (ValueError, RecursionError) as exc:
        raise BuiltinError("json.unmarshal: invalid JSON") from exc
    finally:
        sys.setrecursionlimit(old)


def json_is_valid(s: Any) -> bool:
    """OPA: ``false`` for any operand that is not a string (regorus: a type error, which
    makes the expression undefined), else whether it parses as JSON (as json.unmarshal)."""
    if not isinstance(s, str):
        return False
    try:
        json_unmarshal(s)
    except BuiltinError:
        return False
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def semver_is_valid(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    return _SEMVER.fullmatch(v) is not None


_SEMVER = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)


def _operands(a: Any, b: Any, op: str) -> tuple[Decimal, Decimal]:
    return _dec(number(a, op)), _dec(number(b, op))


# The operators run as Python extensions on every arithmetic expression (rewrite_arith), so
# each one tests its operands' exact types first: ``type(x) is int`` is False for bool (a
# builtin error, as in OPA) and True only for the plain ints regorus hands over. Two ints
# compute on Python's exact ints (no Decimal); numbers of either kind go straight to the
# Decimal context with the conversions of ``_dec`` inlined; anything else takes the checked
# path, which raises the builtin error. Results are those of the Decimal path bit for bit
# (tests/policy/test_arith_fast.py holds them to the previous implementation).


def arith_add(a: Any, b: Any) -> int | float:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a + b  # type: ignore[no-any-return]
    if (ta is float or ta is int) and (tb is float or tb is int):
        return _num(_CTX.add(Decimal(a) if ta is int else Decimal(repr(a)),
                             Decimal(b) if tb is int else Decimal(repr(b))))
    return _num(_CTX.add(*_operands(a, b, "plus")))


def arith_sub(a: Any, b: Any) -> Any:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a - b
    if (ta is float or ta is int) and (tb is float or tb is int):
        return _num(_CTX.subtract(Decimal(a) if ta is int else Decimal(repr(a)),
                                  Decimal(b) if tb is int else Decimal(repr(b))))
    if isinstance(a, (set, frozenset)) and isinstance(b, (set, frozenset)):
        return a - b
    return _num(_CTX.subtract(*_operands(a, b, "minus")))


def arith_mul(a: Any, b: Any) -> int | float:
    ta, tb = type(a), type(b)
    if ta is int and tb is int:
        return a * b  # type: ignore[no-any-return]
    if (ta is float or ta is int) and (tb is float or tb is int):
        return _num(_CTX.multiply(Decimal(a) if ta is int else Decimal(repr(a)),
                                  Decimal(b) if tb is int else Decimal(repr(b))))
    return _num(_CTX.multiply(*_operands(a, b, "mul")))


def arith_div(a: Any, b: Any) -> int | float:
    x, y = _operands(a, b, "div")
    if y == 0:
        raise BuiltinError("div: divide by zero")
    return _num(_CTX.divide(x, y))


def arith_rem(a: Any, b: Any) -> int:
    if type(a) is int and type(b) is int and b > 0:
        return a % b if a >= 0 else -(-a % b)  # Go's %: the sign of the dividend
    x, y = number(a, "rem"), number(b, "rem")
    if not (isinstance(x, int) and isinstance(y, int)):
        if not (float(x).is_integer() and float(y).is_integer()):
            raise BuiltinError("rem: modulo on floating-point number")
        x, y = int(x), int(y)
    if y == 0:
        raise BuiltinError("rem: modulo by zero")
    r = abs(x) % abs(y)  # Go's %: the sign of the dividend
    return -r if x < 0 else r


ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "Add": arith_add, "Sub": arith_sub, "Mul": arith_mul, "Div": arith_div, "Mod": arith_rem,
}


TEXT_EXTENSIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    # Only for strings and input values (support.py routes those calls here): regorus cannot
    # hand Python a set of arrays or objects, which policies build and count.
    "__exact.count": (1, count),
    "strings.count": (2, strings_count),
    "indexof": (2, indexof),
    "indexof_n": (2, indexof_n),
    "strings.replace_n": (2, replace_n),
    "upper": (1, upper),
    "lower": (1, lower),
    "regex.match": (2, regex_match),
    "regex.is_valid": (1, regex_is_valid),
    "regex.find_n": (3, regex_find_n),
    "regex.find_all_string_submatch_n": (3, regex_find_all_string_submatch_n),
    "regex.split": (2, regex_split),
    "regex.replace": (3, regex_replace),
    "sum": (1, sum_),
    "product": (1, product),
    "floor": (1, floor_),
    "ceil": (1, ceil_),
    "format_int": (2, format_int),
    "to_number": (1, to_number),
    "base64.decode": (1, base64_decode),
    "urlquery.decode": (1, urlquery_decode),
    "json.unmarshal": (1, json_unmarshal),
    "json.is_valid": (1, json_is_valid),
    "semver.is_valid": (1, semver_is_valid),
}
