"""OPA's default (non-strict) builtin-error semantics for the embedded engine.

In OPA a builtin that fails (type mismatch, invalid regex, base64, JSON, division by zero)
makes only *its expression* undefined; ``default``, ``else``, ``not`` and the other rules still
decide. regorus fails the whole evaluation instead. A deny rule that errors is a 503 on the
embedded engine and a decision on the sidecar: the same policy would decide differently.

regorus cannot return "undefined" from an extension, so the non-strict variant of a bundle is
a *rewritten copy* of its sources: every builtin call ``f(a, b)`` becomes
``__ns.f(a, b)[0]`` (arithmetic is already ``__arith.div(a, b)``, see ``rewrite_arith``). The
``__ns.*`` extensions run the real builtin (native, through a one-rule helper engine, or our
Python override) and return ``[value]``, or ``[]`` on error: indexing an empty array is
undefined, exactly OPA's rule. The rewrite is driven by regorus' own AST spans.

Cost: none on the hot path. The fast, unmodified engine evaluates every request; only when it
raises does ``Program`` re-evaluate that one request on the non-strict copy. An evaluation
that raises nothing has, by definition, hit no builtin error, so both variants agree on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import regorus

from pep.policy import builtins
from pep.policy.builtins import ARITH_OPS

PREFIX = "__ns."
# Not wrapped: print has no value; our own wrappers; calls OPA itself never makes undefined.
_NOT_WRAPPED = {"print"}


class _Edits:
    def __init__(self) -> None:
        self.items: list[tuple[int, int, int, str]] = []  # (start, end, order, text)

    def replace(self, start: int, end: int, text: str) -> None:
        self.items.append((start, end, 0, text))

    def insert(self, pos: int, text: str, order: int) -> None:
        self.items.append((pos, pos, order, text))

    def apply(self, source: bytes) -> bytes:
        out = source
        # Apply right to left; at one position, higher ``order`` goes first (ends up right).
        for start, end, _order, text in sorted(
            self.items, key=lambda e: (e[0], e[1], e[2]), reverse=True
        ):
            out = out[:start] + text.encode() + out[end:]
        return out


def _span(node: dict[str, Any]) -> tuple[int, int]:
    body = next(iter(node.values()))
    span = body["span"]
    return int(span["start"]), int(span["end"])


def _nodes(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, body) of every spanned AST node, pre-order (iterative: ASTs are deep)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if len(cur) == 1:
                kind, body = next(iter(cur.items()))
                if isinstance(body, dict) and "span" in body:
                    yield kind, body
            stack.extend(reversed(cur.values()))
        elif isinstance(cur, list):
            stack.extend(reversed(cur))


def _numeric(node: dict[str, Any]) -> bool:
    """Statically a number (or an input value, which is never a set)."""
    kind, body = next(iter(node.items()))
    if kind in ("Number", "ArithExpr"):
        return True
    if kind == "UnaryExpr":
        return True
    while kind in ("RefDot", "RefBrack"):
        kind, body = next(iter(body["refr"].items()))
    return kind == "Var" and body.get("value") == "input"


def rewrite_arith(source: str, ast: dict[str, Any]) -> str:
    """``a + b`` -> ``__arith.add(a, b)`` (and - * / %): OPA computes on exact decimals
    (``0.1 + 0.2 == 0.3``), regorus on binary floats. Applied to the fast copy too."""
    raw = source.encode()
    edits = _Edits()
    for kind, body in _nodes(ast.get("rules", [])):
        if kind != "ArithExpr" or body.get("op") not in ARITH_OPS:
            continue
        op = body["op"]
        if op == "Sub" and not (_numeric(body["lhs"]) and _numeric(body["rhs"])):
            continue  # may be set difference: regorus cannot hand Python a set of arrays
        l_start, l_end = _span(body["lhs"])
        r_start, _ = _span(body["rhs"])
        at = raw[l_end:r_start].find(ARITH_OPS[op][0].encode())
        if at < 0:
            raise ValueError(f"operator {op} not found at byte {l_end}")
        start, end = min(int(body["span"]["start"]), l_start), int(body["span"]["end"])
        edits.insert(start, f"__arith.{ARITH_OPS[op][1]}(", order=-end)
        edits.replace(l_end + at, l_end + at + 1, ",")
        edits.insert(end, ")", order=-start)
    return edits.apply(raw).decode()


def _queries(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            if "stmts" in cur and "span" in cur:
                yield cur
            stack.extend(cur.values())
        elif isinstance(cur, list):
            stack.extend(cur)


def _calls(node: Any) -> Iterator[dict[str, Any]]:
    """Outermost Call nodes inside ``node``."""
    if isinstance(node, dict):
        if len(node) == 1 and "Call" in node:
            yield node["Call"]
            return
        for value in node.values():
            yield from _calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _calls(value)


def rewrite(
    source: str, ast: dict[str, Any], is_builtin: Callable[[str], int | None]
) -> tuple[str, set[tuple[str, int]]]:
    """The non-strict copy of one module and the (builtin, arity) pairs it now calls."""
    from pep.policy.rego_ast import ref_name

    raw = source.encode()
    edits = _Edits()
    wrapped: set[tuple[str, int]] = set()
    for kind, body in _nodes(ast.get("rules", [])):
        if kind != "Call":
            continue
        name = ref_name(body["fcn"])
        if name is None or name in _NOT_WRAPPED or name.startswith(PREFIX):
            continue
        if is_builtin(name) != len(body.get("params", [])):
            continue  # a policy function, or a native builtin in relation form
        f_start, f_end = _span(body["fcn"])
        edits.replace(f_start, f_end, PREFIX + name)
        edits.insert(int(body["span"]["end"]), "[0]", order=-f_start)
        wrapped.add((name, len(body.get("params", []))))
    _hoist_out_of_not(raw, ast, edits)
    return edits.apply(raw).decode(), wrapped


def _hoist_out_of_not(raw: bytes, ast: dict[str, Any], edits: _Edits) -> None:
    """OPA compiles ``not f(g(x))`` as ``v := g(x); not f(v)``: a failing nested call
    fails the body instead of making the negation true. Do the same (non-strict copy only).
    """
    counter = 0
    for query in _queries(ast.get("rules", [])):
        hoists: list[tuple[int, str]] = []
        for stmt in query["stmts"]:
            literal = stmt.get("literal", {})
            negated = literal.get("NotExpr") if isinstance(literal, dict) else None
            if negated is None or stmt.get("with_mods"):
                continue
            expr = negated["expr"]
            top = expr.get("Call")
            inner = top.get("params", []) if top is not None else expr
            for call in _calls(inner):
                c_start, c_end = int(call["span"]["start"]), int(call["span"]["end"])
                mine = [e for e in edits.items if c_start <= e[0] and e[1] <= c_end]
                if not mine:
                    continue  # not a wrapped builtin
                sub = _Edits()
                sub.items = [(a - c_start, b - c_start, o, t) for a, b, o, t in mine]
                text = sub.apply(raw[c_start:c_end]).decode()
                edits.items = [e for e in edits.items if e not in mine]
                var = f"__nsh{counter}"
                counter += 1
                edits.replace(c_start, c_end, var)
                hoists.append((int(negated["span"]["start"]), f"{var} := {text}; "))
        if not hoists:
            continue
        q_start, q_end = int(query["span"]["start"]), int(query["span"]["end"])
        before = raw[:q_start].rstrip()
        # Only a rule body written without braces (`allow if not ...`) needs them;
        # comprehension and braced bodies already take `;`-separated statements.
        if raw[q_start:q_start + 1] != b"{" and (before.endswith(b" if") or before == b"if"):
            edits.insert(q_start, "{ ", order=-(1 << 30))
            edits.insert(q_end, " }", order=1 << 30)
        for i, (pos, text) in enumerate(hoists):
            edits.insert(pos, text, order=-(1 << 20) + i)


class SafeBuiltins:
    """The ``__ns.*`` extensions of one non-strict engine: each returns [value] or []."""

    def __init__(self) -> None:
        self._helpers: dict[tuple[str, int], Any] = {}

    def _helper(self, name: str, nargs: int) -> Any:
        key = (name, nargs)
        helper = self._helpers.get(key)
        if helper is None:
            helper = regorus.Engine()
            builtins.register(helper)
            expr = f"{name}({', '.join(f'input[{i}]' for i in range(nargs))})"
            helper.add_policy("ns.rego", f"package __ns_helper\nx := {expr}\n")
            self._helpers[key] = helper
        return helper

    def function(self, name: str, nargs: int) -> Callable[..., Any]:
        override = builtins.EXTENSIONS.get(name)

        def run(*args: Any) -> list[Any]:
            try:
                if override is not None and override[0] == nargs:
                    return [override[1](*args)]
                helper = self._helper(name, nargs)
                helper.set_input(list(args))
                value = helper.eval_rule("data.__ns_helper.x")
            except Exception:  # noqa: BLE001 - any builtin error is "undefined" in OPA
                return []
            except BaseException as exc:  # a Rust panic: drop the helper, stay undefined
                if type(exc).__name__ != "PanicException":
                    raise
                self._helpers.pop((name, nargs), None)
                return []
            return [] if value is None else [value]

        return run

    def register(self, engine: Any, wrapped: set[tuple[str, int]]) -> None:
        for name, nargs in sorted(wrapped):
            engine.add_extension(PREFIX + name, nargs, self.function(name, nargs))


def ast_modules(engine: Any) -> dict[str, dict[str, Any]]:
    """file name -> AST of every module loaded in ``engine``."""
    return {
        entry["source"]["file"]: entry["ast"] for entry in orjson.loads(engine.get_ast_as_json())
    }
