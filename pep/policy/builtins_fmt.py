"""``sprintf`` as OPA computes it: Go's ``fmt.Sprintf`` over OPA's argument conversion.

OPA hands Go an ``int`` (or big integer) for an integral number, a ``float64`` otherwise, a
Go string for a string, and the Rego text (``{"k": [1]}``) of anything else. Go prints
mismatches inline (``%!d(string=many)``, ``%!s(MISSING)``, ``%!(EXTRA string=x)``) instead
of failing; regorus failed or printed nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pep.policy.builtins_text import BuiltinError, text

_SPEC = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?([a-zA-Z%])")


def rego_text(value: Any) -> str:
    """Rego's String() of a value (as OPA passes composites to Sprintf)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (int, float)):
        return _go_g(value) if isinstance(value, float) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(rego_text(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        if not value:
            return "set()"
        return "{" + ", ".join(sorted(rego_text(v) for v in value)) + "}"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: rego_text(kv[0]))
        return "{" + ", ".join(f"{rego_text(k)}: {rego_text(v)}" for k, v in items) + "}"
    return str(value)


def _go_arg(value: Any) -> tuple[str, Any]:
    """(Go type, Go value) as OPA converts a Rego value for Sprintf."""
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict, set)):
        return "string", rego_text(value)
    if isinstance(value, int):
        return "int", value
    if isinstance(value, float):
        # An integral float is what the embedded engine's arithmetic yields for OPA's
        # integer results (8 / 2); a literal 3.0 is refused at load (support.py).
        return ("int", int(value)) if value.is_integer() and abs(value) < 2**53 \
            else ("float64", value)
    return "string", str(value)


def _go_g(f: float) -> str:
    """Go's strconv.FormatFloat(f, 'g', -1, 64) (shortest; exponent if < -4 or >= 21)."""
    if f == 0:
        return "0"
    d = Decimal(repr(f))
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exp  # decimal point position
    x = point - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 21:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{ds}"
    if point >= len(ds):
        return f"{neg}{ds}{'0' * (point - len(ds))}"
    return f"{neg}{ds[:point]}.{ds[point:]}"


def _bad(verb: str, kind: str, value: Any) -> str:
    return f"%!{verb}({kind}={_plain(kind, value)})"


def _plain(kind: str, value: Any) -> str:
    return _go_g(value) if kind == "float64" else str(value)


def _pad(s: str, flags: str, width: str | None, numeric: bool) -> str:
    if not width or len(s) >= int(width):
        return s
    w = int(width)
    if "-" in flags:
        return s.ljust(w)
    if "0" in flags and numeric:
        sign = s[0] if s[:1] in "+-" else ""
        return sign + s[len(sign):].rjust(w - len(sign), "0")
    return s.rjust(w)


def _one(verb: str, flags: str, prec: str | None, kind: str, value: Any) -> str | None:
    plus = "+" if "+" in flags else ""
    if verb == "v":
        return _plain(kind, value) if kind != "int" else f"{plus if value >= 0 else ''}{value}"
    if verb == "s":
        return value if kind == "string" else None
    if verb == "q":
        return json.dumps(value, ensure_ascii=False) if kind == "string" else None
    if verb == "T":
        return kind
    if verb == "d":
        return f"{plus if value >= 0 else ''}{value}" if kind == "int" else None
    if verb in "xX":
        if kind == "int":
            return format(value, verb)
        if kind == "string":
            hexed = str(value).encode().hex()
            return hexed if verb == "x" else hexed.upper()
        return None
    if verb in "feEgG":
        if kind != "float64" and kind != "int":
            return None
        if kind == "int":
            return None  # Go: %!f(int=7)
        p = 6 if prec is None else int(prec or 0)
        if verb in "gG" and prec is None:
            return _go_g(value)
        return f"{value:{plus}.{p}{verb}}"
    if verb == "t":
        return None
    if verb in "bo":
        return format(value, verb) if kind == "int" else None
    return None


def sprintf(fmt: Any, args: Any) -> str:
    fmt = text(fmt, "sprintf")
    if not isinstance(args, list):
        raise BuiltinError("sprintf: operand 2 must be an array")
    converted = [_go_arg(a) for a in args]
    out: list[str] = []
    used = 0
    pos = 0
    for m in _SPEC.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if used >= len(converted):
            out.append(f"%!{verb}(MISSING)")
            continue
        kind, value = converted[used]
        used += 1
        s = _one(verb, flags, prec, kind, value)
        if s is None:
            out.append(_bad(verb, kind, value))
            continue
        out.append(_pad(s, flags, width, kind in ("int", "float64")))
    out.append(fmt[pos:])
    if used < len(converted):
        extra = ", ".join(f"{k}={_plain(k, v)}" for k, v in converted[used:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


FMT_EXTENSIONS: dict[str, tuple[int, Callable[..., Any]]] = {"sprintf": (2, sprintf)}
