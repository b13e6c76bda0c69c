"""The exact-arithmetic extensions' fast paths (``pep.policy.builtins_text``): every
operator, ``floor`` and ``ceil`` give what the previous, all-checked implementation gave
(kept below as the reference, copied from it) -- the same value, the same type, the same
float bits (negative zero), the same builtin error -- over ints, big ints beyond 2**53 and
2**63, floats, mixed operands, overflowing floats, division and modulo by zero, and the
non-numbers a policy can hand an operator. Then through regorus, as policies call them."""

from __future__ import annotations

import itertools
import math
from decimal import Context, Decimal
from typing import Any

import pytest

from pep.policy import builtins_text as bt
from pep.policy.program import Program

# -- the reference: the implementation before the fast paths, verbatim ------------------

_CTX = Context(prec=34)


def _ref_number(value: Any, fn: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bt.BuiltinError(f"{fn}: operand must be a number")
    return value


def _ref_dec(x: int | float) -> Decimal:
    return Decimal(x) if isinstance(x, int) else Decimal(repr(x))


def _ref_num(d: Decimal) -> int | float:
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def _ref_operands(a: Any, b: Any, op: str) -> tuple[Decimal, Decimal]:
    return _ref_dec(_ref_number(a, op)), _ref_dec(_ref_number(b, op))


def ref_add(a: Any, b: Any) -> int | float:
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return a + b
    return _ref_num(_CTX.add(*_ref_operands(a, b, "plus")))


def ref_sub(a: Any, b: Any) -> Any:
    if isinstance(a, (set, frozenset)) and isinstance(b, (set, frozenset)):
        return a - b
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return a - b
    return _ref_num(_CTX.subtract(*_ref_operands(a, b, "minus")))


def ref_mul(a: Any, b: Any) -> int | float:
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return a * b
    return _ref_num(_CTX.multiply(*_ref_operands(a, b, "mul")))


def ref_div(a: Any, b: Any) -> int | float:
    x, y = _ref_operands(a, b, "div")
    if y == 0:
        raise bt.BuiltinError("div: divide by zero")
    return _ref_num(_CTX.divide(x, y))


def ref_rem(a: Any, b: Any) -> int:
    x, y = _ref_number(a, "rem"), _ref_number(b, "rem")
    if not (isinstance(x, int) and isinstance(y, int)):
        if not (float(x).is_integer() and float(y).is_integer()):
            raise bt.BuiltinError("rem: modulo on floating-point number")
        x, y = int(x), int(y)
    if y == 0:
        raise bt.BuiltinError("rem: modulo by zero")
    r = abs(x) % abs(y)
    return -r if x < 0 else r


def _ref_trunc(x: int | float) -> int:
    return int(_ref_dec(x).to_integral_value(rounding="ROUND_DOWN"))


def ref_floor(x: Any) -> int:
    x = _ref_number(x, "floor")
    if isinstance(x, int) or float(x).is_integer():
        return int(x)
    i = _ref_trunc(x)
    return i - 1 if i < 0 else i


def ref_ceil(x: Any) -> int:
    x = _ref_number(x, "ceil")
    if isinstance(x, int) or float(x).is_integer():
        return int(x)
    i = _ref_trunc(x)
    return i + 1 if i >= 0 else i


# -- the values --------------------------------------------------------------------------

INTS = [0, 1, -1, 2, -2, 3, 7, -7, 12, 500, 49540, 10**6, 2**31 - 1, -2**31,
        2**53 - 1, 2**53, 2**53 + 1, -2**53 - 1, 2**63 - 1, 2**63, -2**63, -2**63 - 1,
        2**64 + 3, 10**33, 10**34 + 1, -10**40 - 7, 3**90]
FLOATS = [0.0, -0.0, 0.1, 0.2, 0.3, -0.1, 0.5, -0.5, 1.5, -1.5, 2.5, 1.0, -1.0, 3.0, 1e-7,
          1 / 3, 2.0**53, 2.0**53 + 2, 9007199254740993.0, 2.0**63, -2.0**63, 1e16, 1e22,
          1e300, -1e300, 1.7976931348623157e308, 5e-324, -5e-324, 123456.789,
          float(10**20), math.pi]
NON_NUMBERS: list[Any] = [True, False, None, "1", "", [1], {"a": 1}, frozenset({1})]
NUMBERS: list[Any] = INTS + FLOATS
OPERANDS: list[Any] = NUMBERS + NON_NUMBERS

PAIRS = [
    ("add", bt.arith_add, ref_add),
    ("sub", bt.arith_sub, ref_sub),
    ("mul", bt.arith_mul, ref_mul),
    ("div", bt.arith_div, ref_div),
    ("rem", bt.arith_rem, ref_rem),
]


def _outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """What a call does, comparably: the value with its type (floats by their bits, so
    -0.0 and 0.0 differ), or the error's type and message."""
    try:
        value = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the error is part of the outcome
        return "error", (type(exc).__name__, str(exc))
    if isinstance(value, float):
        return "float", value.hex()
    return type(value).__name__, value


@pytest.mark.parametrize(("name", "fast", "ref"), PAIRS, ids=[p[0] for p in PAIRS])
def test_operators_match_the_reference_on_every_pair(name: str, fast: Any, ref: Any) -> None:
    checked = 0
    for a, b in itertools.product(OPERANDS, repeat=2):
        assert _outcome(fast, a, b) == _outcome(ref, a, b), (name, a, b)
        checked += 1
    assert checked == len(OPERANDS) ** 2


def test_sets_still_subtract() -> None:
    a, b = frozenset({1, 2, 3}), frozenset({2})
    assert bt.arith_sub(a, b) == ref_sub(a, b) == frozenset({1, 3})
    assert _outcome(bt.arith_sub, a, 1) == _outcome(ref_sub, a, 1)
    assert _outcome(bt.arith_sub, 1, a)[0] == "error"


@pytest.mark.parametrize(("fast", "ref"), [(bt.floor_, ref_floor), (bt.ceil_, ref_ceil)],
                         ids=["floor", "ceil"])
def test_floor_and_ceil_match_the_reference(fast: Any, ref: Any) -> None:
    values = OPERANDS + [x + 0.25 for x in FLOATS if abs(x) < 1e15] + [-0.75, -1e-300]
    for x in values:
        assert _outcome(fast, x) == _outcome(ref, x), x


def test_known_answers() -> None:
    # The cases the fast paths exist for, and the ones they must not take.
    assert bt.arith_add(2**63 - 1, 1) == 2**63  # beyond int64: exact
    assert bt.arith_add(0.1, 0.2) == 0.3  # exact decimals, as OPA
    assert type(bt.arith_mul(0.2, 500)) is int  # 100.0 is the integer 100
    assert math.copysign(1.0, bt.arith_mul(-0.0, 1.5)) == 1.0  # Decimal: -0 is an int 0
    assert bt.arith_rem(-7, 3) == -1 and bt.arith_rem(7, -3) == 1
    with pytest.raises(bt.BuiltinError, match="modulo by zero"):
        bt.arith_rem(5, 0)
    with pytest.raises(bt.BuiltinError, match="divide by zero"):
        bt.arith_div(5, 0.0)
    with pytest.raises(bt.BuiltinError, match="operand must be a number"):
        bt.arith_add(True, 1)
    assert bt.floor_(2**64 + 1) == 2**64 + 1 and bt.floor_(-1.5) == -2
    assert bt.ceil_(-2**63) == -2**63 and bt.ceil_(-0.5) == 1


def test_operators_through_the_engine() -> None:
    """The extensions as regorus calls them (arguments converted from Rego values), the
    fast and the checked paths, against the values OPA computes."""
    src = """package t
import rego.v1
ints := [a + b, input.a - input.b, a * b, a % 7, (0 - input.a) % 7, floor(b), ceil(b)] if {
    a := input.a
    b := input.b
}
mixed := [input.f + input.a, input.f * 500, input.a - input.f, input.a / 4] if true
big := input.big + 1 if true
"""
    program = Program({"t.rego": src}, {})  # arithmetic rewritten onto the extensions
    doc = '{"a": 12, "b": 49540, "f": 0.2, "big": 9223372036854775807}'
    assert program.evaluate("data.t.ints", doc) == (True, [49552, -49528, 594480, 5, -5,
                                                           49540, 49540])
    assert program.evaluate("data.t.mixed", doc) == (True, [12.2, 100, 11.8, 3])
    assert program.evaluate("data.t.big", doc) == (True, 2**63)
    assert program.fallbacks == 0
