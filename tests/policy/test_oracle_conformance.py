"""The oracle is OPA: on the shared conformance corpus (336 cases whose results real OPA v1.9
produced in its default mode, as the sidecar runs), the oracle (tests/opa_double/oracle.py)
agrees except in exactly two documented ways, so a test that passes on it is a test that
passes on OPA:

- **strict builtin errors**: the oracle always evaluates in OPA's strict mode, so a builtin
  error (type mismatch, division by zero, unparsable input) is an evaluation error where
  ``opa run`` makes the expression undefined (and ``default``/``else``/other rules decide).
  Recognised by the oracle's ``eval_builtin_error`` / ``eval_type_error``; the parity tests
  therefore treat an oracle error on ``policies/`` as a difference, never as agreement.
- **OPA 1.9 -> 1.20**: behaviour OPA itself changed between the version the corpus and
  docker-compose.yml pin and the version the oracle embeds (``VERSION_DIFFERENCES``).

A listed version difference that starts agreeing fails, so the list stays honest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import services_required
from tests.opa_double import oracle, require_oracle

REPO = Path(__file__).resolve().parents[2]
_DIRS = (
    Path(os.environ["REGOGATE_CONFORMANCE"]).parent if os.environ.get("REGOGATE_CONFORMANCE")
    else None,
    # The repo's copy (scripts/refresh_conformance.py keeps it equal to the shared corpus).
    REPO / "tests" / "policy" / "conformance",
    REPO.parent / "shared" / "rego-conformance",
)

# Observed, corpus (opa eval 1.9) vs oracle (OPA 1.20 Go API); the cause is not verified
# case by case (an OPA change or the JSON rendering of `opa eval`), only that it is not the
# strict mode.
VERSION_DIFFERENCES = {
    "sprintf_T": "%T of an integer: 1.9 'int', oracle 'int64'",
    "sprintf_float_d": "%d of the float 3.0: 1.9 '%!d(float64=3)', oracle '3'",
    "sprintf_v_float": "%v of 1e21: 1.9 '%!s(float64=1e+21)', oracle '1e21'",
    "sprintf_verbs": "the same sprintf %T / %d differences, in one case",
    "semver": "semver.is_valid('v1.0.0'): 1.9 false, oracle true",
    "set_membership_types": "1 in {1.0}: 1.9 false, oracle true",
    "big_int_arith": "123456789012345678901234567890 * 2: 1.9 rounded to 15 digits, oracle exact",
    "time_duration_days": "time.parse_duration_ns('1d'): 1.9 undefined, oracle 86400 s",
    "reach_paths_2": "graph.reachable_paths on a cycle: 1.9 one path more",
}


def _cases() -> list[dict[str, Any]]:
    for d in _DIRS:
        if d is not None and (d / "cases.json").is_file():
            out: list[dict[str, Any]] = []
            for name in ("cases.json", "extended.json"):
                if (d / name).is_file():
                    out.extend(json.loads((d / name).read_text()))
            return out
    return []


CASES = _cases()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _oracle_result(case: dict[str, Any]) -> tuple[str, Any]:
    data: list[tuple[list[str], Any]] = [([], case["data"])] if case.get("data") else []
    try:
        engine = oracle.Oracle(case["modules"], data)
    except oracle.OracleError as exc:
        return "error", exc.message
    try:
        defined, value = engine.evaluate(case["query"], case.get("input"))
    except oracle.OracleError as exc:
        return "error", exc.message
    finally:
        engine.close()
    return ("value", value) if defined else ("undefined", None)


def test_conformance_corpus_is_present() -> None:
    if not CASES:
        msg = f"conformance corpus not found in {[str(d) for d in _DIRS if d]}"
        if services_required():
            pytest.fail(msg)
        pytest.skip(msg)
    assert len(CASES) >= 300


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_oracle_gives_opas_result(case: dict[str, Any]) -> None:
    require_oracle()
    kind, value = _oracle_result(case)
    expected = case["opa_result"]
    agrees = kind == expected["kind"] and (
        kind != "value" or _canonical(value) == _canonical(expected["value"])
    )
    if case["id"] in VERSION_DIFFERENCES:
        assert not agrees, f"{case['id']} now agrees: remove it from VERSION_DIFFERENCES"
        return
    if agrees:
        return
    strict_mode = (
        kind == "error"
        and expected["kind"] in ("value", "undefined")
        and ("eval_builtin_error" in str(value) or "eval_type_error" in str(value))
    )
    assert strict_mode, f"{case['id']}: oracle gave {kind} {value!r}, OPA gave {expected}"
