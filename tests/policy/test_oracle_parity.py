"""``policies/`` decides the same on the embedded engine (regorus) and on real OPA (the oracle,
tests/opa_double/oracle.py): every ``_test.rego`` rule, every parity-corpus input, and OPA's
own parse of every ``# METADATA`` block (what ``opa check`` would refuse).

``ALLOWED_DIFFERENCES`` may name a test rule or corpus case that legitimately differs, with the
reason. Only two kinds of reason are acceptable: the oracle evaluates in OPA's strict
builtin-error mode (``opa run`` does not), or OPA changed between the version the embedded
engine follows (1.9) and the oracle's (1.20). A listed difference that starts agreeing fails
too, so the list stays honest. Today nothing in ``policies/`` differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pep.policy import bundle as bundle_mod
from pep.policy import testing
from pep.policy.compiled import eval_rule, load_modules, new_engine
from tests.opa_double import oracle, require_oracle
from tests.policy.conftest import POLICIES

CORPUS = orjson.loads((Path(__file__).parent / "parity_inputs.json").read_bytes())

ALLOWED_DIFFERENCES: dict[str, str] = {}


@pytest.fixture(scope="module")
def opa() -> Iterator[oracle.Oracle]:
    require_oracle()
    engine = oracle.Oracle.for_bundle(oracle.load_bundle(POLICIES))
    yield engine
    engine.close()


def _check(name: str, agrees: bool, detail: str) -> None:
    if name in ALLOWED_DIFFERENCES:
        assert not agrees, f"{name} now agrees: remove it from ALLOWED_DIFFERENCES"
        return
    assert agrees, f"{name}: {detail}"


def test_metadata_blocks_parse_as_opa_parses_them() -> None:
    require_oracle()
    loaded = bundle_mod.load(POLICIES)
    assert oracle.annotation_errors({**loaded.modules, **loaded.tests}) == []


def test_an_invalid_metadata_block_is_reported_by_opa() -> None:
    require_oracle()
    bad = "package p\n\n# METADATA\n# description: one line\n#\n# Prose: with a colon: here\nx := 1\n"
    errors = oracle.annotation_errors({"p.rego": bad})
    assert errors and "p.rego:" in errors[0] and "yaml" in errors[0]


def test_every_policy_test_has_the_same_outcome_on_both_engines(opa: oracle.Oracle) -> None:
    embedded = {r.rule: r.outcome for r in testing.run_embedded(POLICIES)}
    loaded = oracle.load_bundle(POLICIES)
    on_opa = oracle.run_tests(opa, loaded.modules)
    assert len(on_opa) >= 80 and set(on_opa) == set(embedded)
    for rule in sorted(on_opa):
        _check(rule, on_opa[rule] == embedded[rule],
               f"OPA says {on_opa[rule]}, the embedded engine {embedded[rule]}")
        if rule not in ALLOWED_DIFFERENCES:
            assert on_opa[rule] in ("PASS", "SKIPPED"), rule


def _embedded_decision(policy_input: Any) -> tuple[bool, Any]:
    engine = new_engine()
    loaded = bundle_mod.load(POLICIES)
    load_modules(engine, loaded.modules, loaded.data)
    engine.set_input_json(orjson.dumps(policy_input).decode())
    return eval_rule(engine, "data.regogate.decision")


def _canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_parity_corpus_raw_decision_is_identical(opa: oracle.Oracle, case: dict[str, Any]) -> None:
    """The whole decision document, before the PEP validates it (every key, every order)."""
    defined, value = opa.evaluate("regogate/decision", case["input"])
    e_defined, e_value = _embedded_decision(case["input"])
    assert defined and e_defined
    _check(case["name"], _canonical(value) == _canonical(e_value),
           f"OPA {value!r} != embedded {e_value!r}")
    assert value["allow"] is case["expect"]["allow"]
