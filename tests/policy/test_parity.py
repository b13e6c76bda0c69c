"""The shipped policies decide identically on every engine, on a corpus of inputs.

``parity_inputs.json`` holds inputs with the expected allow and reason codes. Each engine
(embedded; OPA's REST API with real OPA deciding, tests/opa_double; ``opa run`` when an
``opa`` binary is available) must meet the expectation, and its whole decision (allow,
reasons, obligations) must equal the embedded engine's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pep.policy.contract import Decision
from pep.policy.embedded import EmbeddedEngine
from tests.policy.conftest import POLICIES, EngineMaker

CORPUS = orjson.loads((Path(__file__).parent / "parity_inputs.json").read_bytes())


def _comparable(decision: Decision) -> dict[str, Any]:
    return decision.model_dump(exclude={"decision_id", "engine_decision_id", "policy_revision"})


async def test_parity_corpus_is_decided_identically(make_engine: EngineMaker) -> None:
    reference = EmbeddedEngine(POLICIES, hot_reload=False)
    await reference.start()
    engine = await make_engine(POLICIES)
    for case in CORPUS:
        expected = await reference.evaluate(case["input"])
        got = await engine.evaluate(case["input"])
        assert got.allow is case["expect"]["allow"], case["name"]
        assert sorted(r.code for r in got.reasons) == sorted(case["expect"]["reasons"]), case[
            "name"
        ]
        assert _comparable(got) == _comparable(expected), case["name"]


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_parity_inputs_are_valid_policy_inputs(case: dict[str, Any]) -> None:
    from pep.policy.contract import PolicyInput

    PolicyInput.model_validate(case["input"])
