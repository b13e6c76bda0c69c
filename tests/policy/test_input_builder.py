"""The hot-path PolicyInput builder (plain dicts) must always produce a valid PolicyInput v1."""

from __future__ import annotations

from pep.policy.contract import MAX_POLICY_FINDINGS, Finding, PolicyInput
from pep.policy.input import build_policy_input
from pep.principal import Principal
from pep.request import NormalizedRequest

ALICE = Principal(sub="alice", issuer="http://idp", email="alice@example.com", name="Alice",
                  groups=("ml-team",), roles=("reader",), teams=("research", "ai"),
                  client_id="chat-ui", actor={"sub": "agent-7", "act": {"sub": "svc"}},
                  claims={"sub": "alice", "scope": "openid"})


def _request(**kw: object) -> NormalizedRequest:
    base: dict[str, object] = dict(api="chat.completions", inbound_format="openai",
                                   model="mock-gpt", stream=True, body={},
                                   roles=["system", "user"], texts=["be nice", "hi"],
                                   tools=["lookup"], params={"temperature": 0.1},
                                   max_tokens=50, estimated_tokens=9)
    base.update(kw)
    return NormalizedRequest(**base)  # type: ignore[arg-type]


def test_the_built_input_is_a_valid_policy_input_v1() -> None:
    finding = Finding(type="email", message_index=1, start=0, end=2, detector="builtin:x")
    doc = build_policy_input(ALICE, _request(), request_id="req_1", source_ip="127.0.0.1",
                             findings=[finding], usage={"user": {}}, provider="mock")
    parsed = PolicyInput.model_validate(doc)
    assert parsed.user.team == "research" and parsed.user.teams == ["research", "ai"]
    assert parsed.actor is not None and parsed.actor.sub == "agent-7"
    assert parsed.request.messages[1].text == "hi" and parsed.request.text == "be nice\nhi"
    assert parsed.content.types == ["email"] and not parsed.content.truncated
    assert parsed.client.id == "chat-ui"


def test_non_model_apis_and_service_principals_are_valid_too() -> None:
    service = Principal(sub="batch-service", issuer="http://idp", kind="service",
                        client_id="batch-service")
    req = _request(api="audit.read", model="", stream=False, roles=[], texts=[], tools=[])
    PolicyInput.model_validate(build_policy_input(service, req, request_id="r", source_ip=None))


def test_a_flood_of_findings_is_cut_to_the_limit_but_every_type_is_kept() -> None:
    many = [Finding(type="email", message_index=0, start=i, end=i + 1)
            for i in range(MAX_POLICY_FINDINGS + 500)]
    many.append(Finding(type="private_key", message_index=0, start=0, end=1))
    doc = build_policy_input(ALICE, _request(), request_id="r", source_ip=None, findings=many)
    parsed = PolicyInput.model_validate(doc)
    assert len(parsed.content.findings) == MAX_POLICY_FINDINGS
    assert parsed.content.truncated is True
    assert parsed.content.types == ["email", "private_key"]
