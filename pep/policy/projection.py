"""Which ``input`` paths the output phase of a bundle can read: a load-time analysis.

The output decision (``input.output`` set, pep.output) runs on every answer, and the shipped
library's output phase reads only ``input.output.types``. If a bundle *provably* reads no
more, its output decision is a function of the projection of the input onto those paths
(plus data, fixed per compiled bundle), and can be memoised on it (pep.policy.output_memo).

The analysis works on regorus' AST of the sources the engine runs (``Engine.get_ast_as_json``)
and answers a ``Projection`` or the reason it refuses. Soundness first; a refusal only costs
the memo:

1. The entry rule must be one complete rule (``decision := ... if {...} else := ...``)
   whose *first* body cannot fail when its guard holds: each literal is either a bare
   ``input`` ref (a guard; the memo applies only when every guard is truthy at run time) or
   ``v := E`` with ``E`` provably defined (literals, comprehensions, locals, partial set
   rules, ``default``-ed rules, data paths present in the bundle's data, and a few builtins
   that either answer or raise). So when the strict engine answers without error, it
   answered from that body: the ``else`` chain is unreachable and is not analysed. A
   result the non-strict fallback produced is never memoised (a builtin error there turns
   into "undefined" and could reach the ``else``).
2. From that body, every rule it can reach is collected (every body, ``else``, ``default``
   and function of each) and every ``input`` ref in them is recorded: a static ref used as
   a whole literal (``input.x`` or ``not input.x``) only tests definedness and truthiness,
   so only that bit is keyed; any other static ref is keyed by its value; a dynamic index
   (``input.a[k]``) is keyed by the value of its static prefix (``input.a``).
3. Refused: ``input`` whole or indexed dynamically at the top (``input[k]``), ``import
   input``, ``with``, ``walk`` and builtins whose answer is not a function of their
   arguments (time, randomness, network), a dynamic index into a part of ``data`` holding
   rules (``data.x[k]``), a reference to a whole package, and anything not recognised.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]

# Builtins whose answer is not a function of their arguments (or that the brief of this
# analysis refuses outright: ``walk`` sees a whole document).
_IMPURE = frozenset({
    "walk", "time.now_ns", "rand.intn", "uuid.rfc4122", "http.send", "opa.runtime",
    "net.lookup_ip_addr", "io.jwt.decode_verify", "crypto.x509.parse_and_verify_certificates",
    "crypto.x509.parse_and_verify_certificates_with_options", "trace", "print",
    # randomised signatures and clock-bound request signing (refused at load today anyway)
    "io.jwt.encode_sign", "io.jwt.encode_sign_raw", "providers.aws.sign_req",
})
# Builtins that, on defined arguments, either answer or raise (never "undefined"):
# checked against regorus by tests/policy/test_output_memo.py.
_DEFINED_ON_DEFINED = frozenset({
    "count", "sort", "object.union", "object.get", "concat", "sprintf", "is_string",
    "is_number", "is_boolean", "is_array", "is_set", "is_object", "is_null", "type_name",
})
_SCALARS = frozenset({"Null", "True", "False", "Bool", "Number", "String", "RawString"})
_ARITH_EXT = "__arith."


class Refused(Exception):
    """The analysis cannot prove a projection sound for this bundle."""


@dataclass(frozen=True)
class Projection:
    values: tuple[Path, ...]  # keyed by their JSON value (or undefined)
    bits: tuple[Path, ...]  # keyed by "defined and not false"
    guards: tuple[Path, ...]  # must be truthy for the memo to apply


@dataclass
class _Module:
    package: Path
    imports: dict[str, Path]  # alias -> target path (first segment "data")


@dataclass(frozen=True)
class _Rule:
    path: Path
    kind: str  # Compr | Set | Func | Default
    node: dict[str, Any]
    module: _Module
    dynamic_key: bool  # r[k] := v, a.b[k] contains ...


def _kind(node: Any) -> tuple[str, Any]:
    if not isinstance(node, dict) or len(node) != 1:
        raise Refused(f"unexpected AST node {str(node)[:60]}")
    kind, body = next(iter(node.items()))
    return kind, body


def _chain(node: Any) -> tuple[str | None, list[Any]]:
    """(base var, segments): a segment is a field name (str) or an index node."""
    segments: list[Any] = []
    while True:
        kind, body = _kind(node)
        if kind == "RefDot":
            segments.append(body["field"][1] if isinstance(body["field"], list) else
                            body["field"])
            node = body["refr"]
        elif kind == "RefBrack":
            index = body["index"]
            ikind, ibody = _kind(index)
            segments.append(ibody["value"] if ikind == "String" else index)
            node = body["refr"]
        elif kind == "Var":
            return str(body["value"]), segments[::-1]
        else:
            return None, segments[::-1]


def _static(segments: list[Any]) -> tuple[Path, list[Any]]:
    prefix: list[str] = []
    for i, seg in enumerate(segments):
        if not isinstance(seg, str):
            return tuple(prefix), segments[i:]
        prefix.append(seg)
    return tuple(prefix), []


def _source_alias(source: bytes, alias: Any) -> str | None:
    if isinstance(alias, dict) and "start" in alias and "end" in alias:
        return source[alias["start"]:alias["end"]].decode(errors="replace") or None
    return None


@dataclass
class _Index:
    rules: dict[Path, list[_Rule]] = field(default_factory=dict)
    names: dict[Path, set[str]] = field(default_factory=dict)  # package -> rule names

    def at(self, path: Path) -> list[_Rule]:
        return self.rules.get(path, [])

    def covering(self, path: Path) -> list[_Rule]:
        """Rules at, under or above ``path``."""
        n = len(path)
        return [r for p, rs in self.rules.items()
                if p[:n] == path or path[:len(p)] == p for r in rs]

    def under(self, path: Path) -> bool:
        n = len(path)
        return any(len(p) > n and p[:n] == path for p in self.rules)


def _index(entries: list[dict[str, Any]]) -> _Index:
    index = _Index()
    for entry in entries:
        ast, name = entry["ast"], str(entry["source"]["file"])
        base, segs = _chain(ast["package"]["refr"])
        package, rest = _static(segs)
        if base is None or rest:
            raise Refused(f"{name}: package path not understood")
        module = _Module(("data", base, *package) if base != "data" else ("data", *package),
                         {})
        source = str(entry["source"].get("contents", "")).encode()
        for imp in ast.get("imports", []):
            ibase, isegs = _chain(imp["refr"])
            ipath, irest = _static(isegs)
            if ibase == "input":
                raise Refused(f"{name}: import input")
            if ibase != "data" or irest:
                continue  # rego.v1, future.keywords
            full = ("data", *ipath)
            alias = _source_alias(source, imp.get("as")) or full[-1]
            module.imports[alias] = full
        for rule in ast.get("rules", []):
            kind, body = _kind(rule)
            if kind == "Default":
                head_ref, head_kind = body["refr"], "Default"
            elif kind == "Spec":
                head_kind, head = _kind(body["head"])
                head_ref = head["refr"]
            else:
                raise Refused(f"{name}: rule kind {kind}")
            hbase, hsegs = _chain(head_ref)
            hpath, hrest = _static(hsegs)
            if hbase is None:
                raise Refused(f"{name}: rule head not understood")
            path = (*module.package, hbase, *hpath)
            index.rules.setdefault(path, []).append(
                _Rule(path, head_kind, rule, module, bool(hrest)))
            index.names.setdefault(module.package, set()).add(hbase)
    return index


class _Analysis:
    def __init__(self, index: _Index, data: dict[str, Any]) -> None:
        self.index = index
        self.data = data
        self.values: set[Path] = set()
        self.bits: set[Path] = set()
        self.seen: set[int] = set()
        self.queue: list[_Rule] = []

    # -- reads -------------------------------------------------------------------------

    def rule(self, rule: _Rule) -> None:
        if id(rule.node) in self.seen:
            return
        self.seen.add(id(rule.node))
        self.queue.append(rule)

    def drain(self) -> None:
        while self.queue:
            rule = self.queue.pop()
            kind, body = _kind(rule.node)
            if kind == "Default":
                self.expr(body["value"], rule.module)
                continue
            _, head = _kind(body["head"])
            self.expr(head["refr"], rule.module)
            for key in ("key", "args"):
                if head.get(key) is not None:
                    for node in head[key] if key == "args" else [head[key]]:
                        self.expr(node, rule.module)
            if head.get("assign"):
                self.expr(head["assign"]["value"], rule.module)
            for b in body["bodies"]:
                if b.get("assign"):
                    self.expr(b["assign"]["value"], rule.module)
                self.query(b["query"], rule.module)

    def query(self, query: dict[str, Any], module: _Module) -> None:
        for stmt in query["stmts"]:
            if stmt.get("with_mods"):
                raise Refused("a `with` modifier")
            self.literal(stmt["literal"], module)

    def literal(self, literal: Any, module: _Module) -> None:
        kind, body = _kind(literal)
        if kind in ("Expr", "NotExpr"):
            path = self.input_ref(body["expr"])
            if path is not None:
                self.bits.add(path)  # only definedness and truthiness are tested
            else:
                self.expr(body["expr"], module)
        elif kind == "SomeVars":
            return
        elif kind == "SomeIn":
            for key in ("key", "value", "collection"):
                if body.get(key) is not None:
                    self.expr(body[key], module)
        elif kind == "Every":
            if isinstance(body.get("key"), dict) and len(body["key"]) == 1:
                self.expr(body["key"], module)
            self.expr(body["domain"], module)
            self.query(body["query"], module)
        else:
            raise Refused(f"literal {kind}")

    def input_ref(self, node: Any) -> Path | None:
        """A whole static ``input.a.b`` ref (None for anything else)."""
        kind, _ = _kind(node)
        if kind not in ("RefDot", "RefBrack"):
            return None
        base, segs = _chain(node)
        path, rest = _static(segs)
        return path if base == "input" and path and not rest else None

    def expr(self, node: Any, module: _Module) -> None:
        if node is None:
            return
        kind, body = _kind(node)
        if kind in _SCALARS:
            return
        if kind in ("Var", "RefDot", "RefBrack"):
            self.ref(node, module)
        elif kind in ("Array", "Set"):
            for item in body["items"]:
                self.expr(item, module)
        elif kind == "Object":
            for _span, key, value in body["fields"]:
                self.expr(key, module)
                self.expr(value, module)
        elif kind in ("ArrayCompr", "SetCompr"):
            self.expr(body["term"], module)
            self.query(body["query"], module)
        elif kind == "ObjectCompr":
            self.expr(body["key"], module)
            self.expr(body["value"], module)
            self.query(body["query"], module)
        elif kind == "Call":
            self.call(body, module)
        elif kind in ("BinExpr", "BoolExpr", "ArithExpr", "AssignExpr"):
            self.expr(body["lhs"], module)
            self.expr(body["rhs"], module)
        elif kind == "Membership":
            for key in ("key", "value", "collection"):
                self.expr(body.get(key), module)
        elif kind == "UnaryExpr":
            self.expr(body["expr"], module)
        else:
            raise Refused(f"expression {kind}")

    def call(self, body: dict[str, Any], module: _Module) -> None:
        base, segs = _chain(body["fcn"])
        path, rest = _static(segs)
        if base is None or rest:
            raise Refused("a call through a dynamic name")
        name = ".".join((base, *path))
        if name in _IMPURE:
            raise Refused(f"a call to {name}")
        target = self.resolve(base, path, module)
        if target is not None:
            rules = self.index.covering(target)
            for r in rules:
                self.rule(r)
        for param in body["params"]:
            self.expr(param, module)

    def resolve(self, base: str, path: Path, module: _Module) -> Path | None:
        """The data path a name refers to, or None (a local, a builtin)."""
        if base == "data":
            return ("data", *path)
        if base in module.imports:
            return (*module.imports[base], *path)
        if base in self.index.names.get(module.package, ()):
            return (*module.package, base, *path)
        return None

    def ref(self, node: Any, module: _Module) -> None:
        base, segs = _chain(node)
        path, rest = _static(segs)
        for seg in rest:
            if not isinstance(seg, str):
                self.expr(seg, module)
        if base is None:
            kind, body = _kind(node)
            raise Refused(f"a reference into a {kind}")
        if base == "input":
            if not path:
                raise Refused("`input` used whole or indexed dynamically")
            self.values.add(path)
            return
        target = self.resolve(base, path, module)
        if target is None:
            return  # a local variable
        if rest and self.index.under(target):
            raise Refused(f"a dynamic lookup into {'.'.join(target)}, which holds rules")
        if self.index.under(target) and not self.index.at(target):
            raise Refused(f"a reference to the whole of {'.'.join(target)}")
        for r in self.index.covering(target):
            self.rule(r)

    # -- the entry's first body must not fail ----------------------------------------

    def defined(self, node: Any, module: _Module, bound: set[str]) -> bool:
        kind, body = _kind(node)
        if kind in _SCALARS or kind in ("ArrayCompr", "SetCompr", "ObjectCompr"):
            return True
        if kind in ("Array", "Set"):
            return all(self.defined(i, module, bound) for i in body["items"])
        if kind == "Object":
            return all(self.defined(k, module, bound) and self.defined(v, module, bound)
                       for _s, k, v in body["fields"])
        if kind == "BoolExpr":
            return (self.defined(body["lhs"], module, bound)
                    and self.defined(body["rhs"], module, bound))
        if kind == "Call":
            base, segs = _chain(body["fcn"])
            path, rest = _static(segs)
            name = ".".join((base or "?", *path))
            known = name in _DEFINED_ON_DEFINED or name.startswith(_ARITH_EXT)
            if base is None or rest or not known or self.resolve(base, path, module):
                return False
            return all(self.defined(p, module, bound) for p in body["params"])
        if kind == "Var" and body["value"] in bound:
            return True
        if kind in ("Var", "RefDot", "RefBrack"):
            base, segs = _chain(node)
            path, rest = _static(segs)
            if base is None or rest or base == "input":
                return False
            target = self.resolve(base, path, module)
            return target is not None and self.defined_path(target)
        return False

    def defined_path(self, target: Path) -> bool:
        rules = self.index.covering(target)
        if not rules:  # pure data: present in this bundle's data, or not
            value: Any = self.data
            for seg in target[1:]:
                if not isinstance(value, dict) or seg not in value:
                    return False
                value = value[seg]
            return True
        if any(r.path != target for r in rules):
            return False
        kinds = {r.kind for r in rules}
        if kinds == {"Set"}:
            return not any(r.dynamic_key for r in rules)
        return ("Default" in kinds and kinds <= {"Default", "Compr"})

    def entry(self, path: Path) -> list[Path]:
        """Walk the entry rule's first body; returns its guards."""
        rules = self.index.covering(path)
        if len(rules) != 1 or rules[0].path != path or rules[0].kind != "Compr" \
                or rules[0].dynamic_key:
            raise Refused(f"{'.'.join(path)} is not one complete rule")
        rule = rules[0]
        self.seen.add(id(rule.node))
        _, spec = _kind(rule.node)
        _, head = _kind(spec["head"])
        bodies = spec["bodies"]
        if not bodies or bodies[0].get("is_else") or head.get("assign") is None:
            raise Refused(f"{'.'.join(path)} has no guarded first body")
        if any(not b.get("is_else") for b in bodies[1:]):
            raise Refused(f"{'.'.join(path)} has several bodies")
        guards: list[Path] = []
        bound: set[str] = set()
        for stmt in bodies[0]["query"]["stmts"]:
            if stmt.get("with_mods"):
                raise Refused("a `with` modifier")
            kind, lit = _kind(stmt["literal"])
            guard = self.input_ref(lit["expr"]) if kind == "Expr" else None
            if guard is not None:
                guards.append(guard)
                self.bits.add(guard)
                continue
            if kind == "Expr":
                ekind, assign = _kind(lit["expr"])
                if ekind == "AssignExpr" and assign["op"] == "ColEq":
                    lkind, lhs = _kind(assign["lhs"])
                    if lkind == "Var" and self.defined(assign["rhs"], rule.module, bound):
                        self.expr(assign["rhs"], rule.module)
                        bound.add(str(lhs["value"]))
                        continue
            line = stmt["literal"][kind].get("span", {}).get("line", "?")
            raise Refused(f"line {line} of {'.'.join(path)}'s first body may fail (the else "
                          "branch could be reached)")
        value = head["assign"]["value"]
        if not self.defined(value, rule.module, bound):
            raise Refused(f"the value of {'.'.join(path)}'s first body may be undefined")
        self.expr(value, rule.module)
        if not guards:
            raise Refused(f"{'.'.join(path)}'s first body tests no input path")
        return guards


def analyse(entries: list[dict[str, Any]], data: dict[str, Any], entry: str) -> Projection:
    """The projection of ``input`` the first body of ``entry`` (a dotted ``data.`` path)
    depends on, from ``get_ast_as_json()``'s list; raises ``Refused`` (with the reason) when
    it cannot be proved."""
    index = _index(entries)
    analysis = _Analysis(index, data)
    guards = analysis.entry(tuple(entry.split(".")))
    analysis.drain()
    bits = analysis.bits - analysis.values
    return Projection(tuple(sorted(analysis.values)), tuple(sorted(bits)), tuple(guards))


def paths(projection: Projection) -> Iterator[Path]:
    yield from projection.values
    yield from projection.bits
