"""Reading regorus' JSON AST (``Engine.get_ast_as_json``): packages, rules and calls.

Used by tooling only (``policy test`` discovers ``test_*`` rules, ``policy check`` finds
every function call), never on the request path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RuleInfo:
    name: str  # first segment of the head, e.g. "test_x" or "obligations"
    kind: str  # Compr | Set | Func
    line: int


@dataclass(frozen=True)
class CallInfo:
    name: str  # dotted name as written, e.g. "crypto.sha256" or "lib.is_admin"
    line: int


@dataclass(frozen=True)
class ModuleInfo:
    file: str
    package: str  # "regogate.access"
    imports: dict[str, str]  # alias -> "data.regogate.lib"
    rules: tuple[RuleInfo, ...]
    calls: tuple[CallInfo, ...]


def ref_name(node: Any) -> str | None:
    """Dotted name of a Var / RefDot chain; None for anything dynamic."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    kind, body = next(iter(node.items()))
    if kind == "Var":
        return str(body["value"])
    if kind == "RefDot":
        base = ref_name(body["refr"])
        field = body["field"]
        if base is None or not isinstance(field, list) or len(field) != 2:
            return None
        return f"{base}.{field[1]}"
    return None


def _line(body: dict[str, Any]) -> int:
    span = body.get("span")
    return int(span["line"]) if isinstance(span, dict) and "line" in span else 0


def _walk_calls(node: Any) -> Iterator[CallInfo]:
    if isinstance(node, dict):
        call = node.get("Call")
        if isinstance(call, dict) and "fcn" in call:
            name = ref_name(call["fcn"])
            if name is not None:
                yield CallInfo(name, _line(call))
        for value in node.values():
            yield from _walk_calls(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_calls(value)


def module_info(entry: dict[str, Any]) -> ModuleInfo:
    """One element of ``get_ast_as_json()``'s list."""
    ast = entry["ast"]
    package = ref_name(ast["package"]["refr"]) or ""
    source = str(entry["source"].get("contents", "")).encode()
    imports: dict[str, str] = {}
    for imp in ast.get("imports", []):
        target = ref_name(imp.get("refr"))
        if target is None or not target.startswith("data."):
            continue
        alias = imp.get("as")  # only a span: the alias text is read from the source
        alias_name = None
        if isinstance(alias, dict) and "start" in alias and "end" in alias:
            alias_name = source[alias["start"] : alias["end"]].decode(errors="replace") or None
        imports[alias_name or target.rsplit(".", 1)[-1]] = target
    rules: list[RuleInfo] = []
    for rule in ast.get("rules", []):
        spec = rule.get("Spec")
        if not isinstance(spec, dict):
            continue
        head_kind, head = next(iter(spec["head"].items()))
        name = ref_name(head.get("refr"))
        if name is None:
            continue
        rules.append(RuleInfo(name.split(".", 1)[0], head_kind, _line(head)))
    return ModuleInfo(
        file=entry["source"]["file"],
        package=package,
        imports=imports,
        rules=tuple(rules),
        calls=tuple(_walk_calls(ast.get("rules", []))),
    )
