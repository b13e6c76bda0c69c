"""parse_decision, the single place that defines a well-formed decision: anything undefined,
ill-typed or unknown is a PolicyError with the right cause (503 at the gateway), never a
silently weakened decision."""

from __future__ import annotations

from typing import Any

import pytest

from pep.policy.contract import (
    MAX_POLICY_FINDINGS,
    POLICY_INPUT_VERSION,
    Decision,
    Obligations,
    PolicyInput,
)
from pep.policy.engine import PolicyError, parse_decision


def parse(raw: Any, revision: str | None = "sha256:rev", decision_id: str | None = "req_1") -> Decision:
    return parse_decision(raw, revision=revision, decision_id=decision_id)


def failure(raw: Any) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse(raw)
    return info.value


def test_a_minimal_allow_gets_the_pep_ids() -> None:
    d = parse({"allow": True})
    assert d.allow is True and d.reasons == [] and d.obligations == Obligations()
    assert (d.policy_revision, d.decision_id) == ("sha256:rev", "req_1")


def test_ids_the_policy_supplies_are_kept_unless_the_pep_has_its_own() -> None:
    raw = {"allow": False, "policy_revision": "policy-rev", "decision_id": "opa-id"}
    d = parse(raw, revision="bundle-rev", decision_id=None)
    assert (d.policy_revision, d.decision_id) == ("policy-rev", "opa-id")
    d = parse(raw, revision=None, decision_id="req_9")
    assert (d.policy_revision, d.decision_id) == ("policy-rev", "req_9")
    d = parse({"allow": False}, revision=None, decision_id=None)
    assert (d.policy_revision, d.decision_id) == (None, None)


def test_a_deny_with_reasons_and_all_obligations_parses() -> None:
    d = parse({"allow": False,
               "reasons": [{"code": "quota", "message": "m",
                            "quota": {"scope": "user", "window": "day"}}],
               "obligations": {"max_tokens": 5, "model": "m", "redact": ["email"],
                               "system_prompt": "s", "audit_content": "none"}})
    assert d.reasons[0].quota is not None and d.reasons[0].quota.metric == "tokens"
    assert d.obligations.max_tokens == 5 and d.obligations.audit_content == "none"


def test_an_undefined_decision_is_policy_undefined() -> None:
    err = failure(None)
    assert (err.code, str(err)) == ("policy_undefined", "policy decision is undefined")


@pytest.mark.parametrize(("raw", "kind"), [("allow", "str"), ([{"allow": True}], "list"),
                                           (True, "bool"), (1, "int")])
def test_a_decision_that_is_not_an_object_is_policy_invalid(raw: Any, kind: str) -> None:
    err = failure(raw)
    assert err.code == "policy_invalid"
    assert str(err) == f"policy decision must be an object, got {kind}"


def test_an_unknown_obligation_is_refused_by_name() -> None:
    err = failure({"allow": True, "obligations": {"max_tokens": 5, "watermark": True, "b": 1}})
    assert err.code == "unknown_obligation"
    assert str(err) == "policy returned obligations the PEP does not enforce: ['b', 'watermark']"


@pytest.mark.parametrize(("raw", "loc"), [
    ({"allow": "yes"}, "allow"),
    ({"allow": 1}, "allow"),
    ({}, "allow"),
    ({"allow": True, "extra": 1}, "extra"),
    ({"allow": True, "obligations": {"max_tokens": "5"}}, "obligations.max_tokens"),
    ({"allow": True, "obligations": {"max_tokens": 0}}, "obligations.max_tokens"),
    ({"allow": True, "obligations": {"max_tokens": 2.5}}, "obligations.max_tokens"),
    ({"allow": True, "obligations": {"audit_content": "everything"}}, "obligations.audit_content"),
    ({"allow": True, "obligations": "none"}, "obligations"),
    ({"allow": False, "reasons": [{"message": "no code"}]}, "reasons.0.code"),
    ({"allow": False, "reasons": [{"code": "q", "quota": {"scope": "org", "window": "day"}}]},
     "reasons.0.quota.scope"),
])
def test_an_ill_typed_decision_is_policy_invalid_and_says_where(raw: Any, loc: str) -> None:
    err = failure(raw)
    assert err.code == "policy_invalid"
    assert str(err).startswith(f"ill-typed policy decision at {loc}: ")
    assert isinstance(err.__cause__, Exception)


@pytest.mark.parametrize(("cap", "expected"), [(2048.0, 2048), (1.0, 1), (7, 7)])
def test_a_whole_number_cap_from_rego_arithmetic_is_an_integer(cap: Any, expected: int) -> None:
    d = parse({"allow": True, "obligations": {"max_tokens": cap}})
    assert d.obligations.max_tokens == expected and isinstance(d.obligations.max_tokens, int)


def test_the_raw_document_is_not_modified() -> None:
    raw: dict[str, Any] = {"allow": True, "obligations": {"max_tokens": 8.0}}
    parse(raw)
    assert raw == {"allow": True, "obligations": {"max_tokens": 8.0}}


def test_contract_constants() -> None:
    assert POLICY_INPUT_VERSION == "v1"
    assert MAX_POLICY_FINDINGS == 1000
    assert PolicyInput.model_fields["version"].default == "v1"


def test_contract_models_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError):
        Obligations.model_validate({"max_tokens": 5, "watermark": True})
    with pytest.raises(ValueError):
        Obligations.model_validate({"max_tokens": 0})


def test_a_policy_error_without_a_cause_is_policy_unavailable() -> None:
    assert PolicyError("engine down").code == "policy_unavailable"
