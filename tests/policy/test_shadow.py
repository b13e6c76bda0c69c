"""Shadow mode: candidate evaluated beside the enforced decision, never enforced."""

from __future__ import annotations

from pathlib import Path

from pep.policy.contract import Decision
from pep.policy.settings import PolicySettings, ShadowSettings
from pep.policy.shadow import ShadowEvaluator, create_shadow
from tests.policy.conftest import policy_input, write_bundle

HEAD = "package regogate\nimport rego.v1\n"


async def _shadow(tmp_path: Path, body: str) -> ShadowEvaluator:
    bundle = write_bundle(tmp_path / "candidate", {"p.rego": HEAD + body})
    shadow = create_shadow(PolicySettings(shadow=ShadowSettings(bundle=bundle), hot_reload=False))
    await shadow.start()
    return shadow


def _enforced(allow: bool = True, **obligations: object) -> Decision:
    return Decision.model_validate(
        {
            "allow": allow,
            "obligations": obligations,
            "policy_revision": "sha256:old",
            "decision_id": "r1",
        }
    )


async def test_agreeing_candidate_reports_nothing(tmp_path: Path) -> None:
    shadow = await _shadow(tmp_path, 'decision := {"allow": true}\n')
    assert await shadow.compare(policy_input(), _enforced()) is None
    assert (shadow.evaluations, shadow.divergences) == (1, 0)


async def test_allow_divergence_is_reported_and_counted(tmp_path: Path) -> None:
    shadow = await _shadow(
        tmp_path, 'decision := {"allow": false, "reasons": [{"code": "new_rule"}]}\n'
    )
    record = await shadow.compare(policy_input(), _enforced())
    assert record is not None
    assert record["shadow"]["differs"] == ["allow", "reasons"]
    assert record["shadow"]["candidate"]["reasons"] == ["new_rule"]
    assert record["shadow"]["candidate"]["revision"] == shadow.revision
    assert record["shadow"]["enforced"]["revision"] == "sha256:old"
    assert shadow.divergences == 1


async def test_obligation_divergence_is_reported(tmp_path: Path) -> None:
    shadow = await _shadow(
        tmp_path, 'decision := {"allow": true, "obligations": {"max_tokens": 10}}\n'
    )
    record = await shadow.compare(policy_input(), _enforced(max_tokens=100))
    assert record is not None and record["shadow"]["differs"] == ["obligations"]


async def test_candidate_error_never_raises_and_is_recorded(tmp_path: Path) -> None:
    shadow = await _shadow(
        tmp_path, 'decision := {"allow": true, "obligations": {"teleport": 1}}\n'
    )
    record = await shadow.compare(policy_input(), _enforced())
    assert record is not None
    assert record["shadow"]["candidate"]["error"] == "unknown_obligation"
    assert shadow.errors == 1


async def test_shadow_does_not_touch_the_enforced_decision(tmp_path: Path) -> None:
    shadow = await _shadow(tmp_path, 'decision := {"allow": false}\n')
    enforced = _enforced()
    before = enforced.model_dump()
    await shadow.compare(policy_input(), enforced)
    assert enforced.model_dump() == before
