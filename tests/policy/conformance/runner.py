"""Run one conformance case the way the gateway evaluates a policy (``Program``).

Outcomes: ``("value", v)``, ``("undefined", None)``, ``("error", message)`` for an
evaluation error, ``("refused", message)`` when the bundle is refused at load, and
``("panic", message)`` if the engine panicked (counted, not fatal: cases run in a worker
process).
"""

from __future__ import annotations

from typing import Any

import json

from pep.policy.engine import PolicyError
from pep.policy.program import EngineFailure, Program


def run_case(case: dict[str, Any]) -> tuple[str, Any]:
    try:
        program = Program(case["modules"], case.get("data") or {})
    except PolicyError as exc:
        if exc.code == "policy_refused":
            return "refused", str(exc)
        return "error", str(exc)  # a compile error (OPA errors too)
    payload = None if case.get("input") is None else json.dumps(case["input"])
    try:
        defined, value = program.evaluate(case["query"], payload)
    except EngineFailure as exc:
        return "panic", str(exc)
    except PolicyError as exc:
        return "error", str(exc)
    return ("value", value) if defined else ("undefined", None)


def canonical(value: Any) -> Any:
    """OPA prints sets as arrays; compare arrays (and sets) order-free."""
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, (list, set, frozenset)):
        return sorted((canonical(v) for v in value), key=repr)
    return value


def agrees(case: dict[str, Any], kind: str, value: Any) -> bool:
    """A pass: OPA's result, or refused at load. Never a different value."""
    expected = case["opa_result"]
    if kind == "refused":
        return True
    if kind != expected["kind"]:
        return False
    return kind != "value" or canonical(value) == canonical(expected["value"])
