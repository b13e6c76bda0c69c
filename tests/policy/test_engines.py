"""Decision behaviour every engine must share (embedded, OPA double, real OPA if present)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pep.policy import bundle as bundle_mod
from pep.policy.engine import PolicyError
from tests.policy.conftest import POLICIES, EngineMaker, policy_input, write_bundle

HEAD = "package regogate\nimport rego.v1\n"


async def _error_code(
    make_engine: EngineMaker, tmp_path: Path, body: str, inp: dict[str, Any] | None = None
) -> str:
    engine = await make_engine(write_bundle(tmp_path / "b", {"p.rego": HEAD + body}))
    with pytest.raises(PolicyError) as info:
        await engine.evaluate(inp or policy_input())
    return info.value.code


async def test_shipped_policy_allows_alice_on_mock_gpt(make_engine: EngineMaker) -> None:
    engine = await make_engine(POLICIES)
    decision = await engine.evaluate(policy_input("alice", ("ml-team",)))
    assert decision.allow is True
    assert decision.obligations.max_tokens == 4096
    assert decision.obligations.audit_content == "digest"


async def test_shipped_policy_denies_bob_the_admin_model_with_a_reason_code(
    make_engine: EngineMaker,
) -> None:
    engine = await make_engine(POLICIES)
    decision = await engine.evaluate(policy_input("bob", ("contractors",), model="mock-gpt-admin"))
    assert decision.allow is False
    assert [r.code for r in decision.reasons] == ["model_not_allowed"]


async def test_decision_carries_revision_and_decision_id(
    make_engine: EngineMaker, engine_kind: str
) -> None:
    engine = await make_engine(POLICIES)
    decision = await engine.evaluate(policy_input(request_id="req-42"))
    assert decision.policy_revision == engine.revision
    # Every engine reports the content hash of the bundle: the embedded engine computes it,
    # OPA reads it from the .manifest `regogate policy build` wrote (provenance).
    assert engine.revision == bundle_mod.load(POLICIES).revision
    assert decision.decision_id == "req-42"  # the gateway's request id, whichever engine


async def test_undefined_decision_is_an_error(make_engine: EngineMaker, tmp_path: Path) -> None:
    code = await _error_code(make_engine, tmp_path, 'decision := {"allow": true} if input.never\n')
    assert code == "policy_undefined"


async def test_ill_typed_decision_is_an_error(make_engine: EngineMaker, tmp_path: Path) -> None:
    code = await _error_code(make_engine, tmp_path, 'decision := {"allow": "yes"}\n')
    assert code == "policy_invalid"


async def test_non_object_decision_is_an_error(make_engine: EngineMaker, tmp_path: Path) -> None:
    code = await _error_code(make_engine, tmp_path, "decision := true\n")
    assert code == "policy_invalid"


async def test_conflicting_decisions_are_an_error(make_engine: EngineMaker, tmp_path: Path) -> None:
    body = 'decision := {"allow": true} if input.user.sub\ndecision := {"allow": false} if input.request.id\n'
    code = await _error_code(make_engine, tmp_path, body)
    assert code == "policy_invalid"


async def test_unknown_obligation_is_an_error(make_engine: EngineMaker, tmp_path: Path) -> None:
    body = 'decision := {"allow": true, "obligations": {"watermark": true}}\n'
    code = await _error_code(make_engine, tmp_path, body)
    assert code == "unknown_obligation"


async def test_decision_reads_input_fresh_each_time(make_engine: EngineMaker) -> None:
    engine = await make_engine(POLICIES)
    first = await engine.evaluate(policy_input("bob", ("contractors",), model="mock-gpt-admin"))
    second = await engine.evaluate(policy_input("carol", ("admins",), model="mock-gpt-admin"))
    assert (first.allow, second.allow) == (False, True)


async def test_engine_is_ready_after_start(make_engine: EngineMaker) -> None:
    engine = await make_engine(POLICIES)
    ok, detail = await engine.ready()
    assert ok is True
    assert detail["revision"] == engine.revision
