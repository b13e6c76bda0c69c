"""The audit events the request path builds as plain dicts must stay valid AuditEvent v1."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from adapters.types import Served, Usage
from pep.audit.events import AuditEvent, EventType
from pep.auditing import event
from pep.errors import PolicyDenied, Unauthorized
from pep.exchange import Exchange
from pep.policy.contract import Decision, Obligations, Reason
from pep.principal import Principal
from pep.request import NormalizedRequest
from tests.harness import running_gateway


def _exchange() -> Exchange:
    x = Exchange(request_id="req_1", method="POST", path="/v1/chat/completions", source_ip="127.0.0.1")
    x.principal = Principal(sub="alice", issuer="http://idp", email="a@example.com",
                            groups=("ml-team",), teams=("research",), client_id="chat-ui",
                            actor={"sub": "agent-7"})
    x.req = NormalizedRequest(api="chat.completions", inbound_format="openai", model="mock-gpt",
                              stream=True, body={}, params={"temperature": 0.2})
    x.decision = Decision(allow=False, reasons=[Reason(code="model_not_allowed", message="no")],
                          obligations=Obligations(max_tokens=5, audit_content="full"),
                          decision_id="req_1", policy_revision="sha256:abc")
    x.engine = "embedded"
    x.model_served = "mock-gpt"
    x.served = Served(provider="mock", kind="mock", model="mock-gpt")
    x.usage = Usage(prompt_tokens=3, completion_tokens=4, estimated=True)
    x.prompt_audit = [{"role": "user", "content": "hi"}]
    return x


@pytest.mark.parametrize("kind", ["request.intent", "request.completion", "policy.deny",
                                  "policy.error", "upstream.error", "shadow.divergence"])
def test_every_event_kind_built_on_the_request_path_is_a_valid_audit_event(kind: EventType) -> None:
    doc = event(kind, _exchange(), status=200, error=PolicyDenied("no", code="model_not_allowed"),
                response_content=["hello"], extra={"k": 1})
    parsed = AuditEvent.model_validate(doc)
    assert parsed.model_dump(mode="json", exclude_none=True) == doc


def test_an_auth_failure_without_a_principal_is_a_valid_audit_event() -> None:
    x = Exchange(request_id="req_2", method="POST", path="/v1/chat/completions", source_ip="::1")
    doc = event("auth.failure", x, error=Unauthorized("bad token"), extra={"code": "invalid_token"})
    parsed = AuditEvent.model_validate(doc)
    assert parsed.model_dump(mode="json", exclude_none=True) == doc
    assert "content" not in doc and "decision" not in doc


async def test_every_record_a_gateway_writes_validates_as_audit_event_v1(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi jane@example.com"}])
        with pytest.raises(openai.PermissionDeniedError):
            await gw.openai("bob").chat.completions.create(
                model="mock-gpt-admin", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.AuthenticationError):
            await gw.openai(token="x.y.z").chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        records = await gw.audit_records()
    assert {r["event"] for r in records} >= {"request.intent", "request.completion",
                                               "policy.deny", "auth.failure"}
    for record in records:
        AuditEvent.model_validate(record)


def test_a_rejection_record_is_a_valid_audit_event_with_sizes_and_no_body() -> None:
    from pep.auditing import rejection_event
    from pep.errors import BadRequest
    from pep.http.body import BodySizes

    x = _exchange()
    x.decision = None
    x.prompt_audit = None
    x.body = BodySizes(declared=120, wire=120, decoded=4000)
    doc = rejection_event("request.rejected", x, BadRequest("no", code="forbidden_parameter",
                                                            param="api_base"))
    parsed = AuditEvent.model_validate(doc)
    assert parsed.model_dump(mode="json", exclude_none=True) == doc
    assert doc["extra"] == {"reason": "forbidden_parameter", "param": "api_base",
                            "content_length": 120, "body_bytes": 120, "decoded_bytes": 4000}
    assert "content" not in doc and doc["outcome"]["status"] == 400
