"""pep.auditing's memos: an event built from a memo is the event built without one."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pep import auditing
from pep.auditing import event, sha256_json
from pep.exchange import Exchange
from pep.policy.contract import Decision, Obligations, QuotaLimit, QuotaRef, Reason
from pep.principal import Principal
from pep.request import NormalizedRequest


def _decision(**ob: Any) -> Decision:
    return Decision(allow=True, reasons=[Reason(code="r", message="m",
                                                quota=QuotaRef(scope="user", window="day"))],
                    obligations=Obligations(**ob), decision_id="req_1", policy_revision="rev")


def _exchange(decision: Decision, params: dict[str, Any] | None = None) -> Exchange:
    x = Exchange(request_id="req_1", method="POST", path="/v1/chat/completions",
                 source_ip="127.0.0.1")
    x.principal = Principal(sub="alice", issuer="https://idp", groups=("g",), teams=("t",))
    x.req = NormalizedRequest(api="chat.completions", inbound_format="openai", model="m",
                              stream=False, body={"model": "m"},
                              params=params if params is not None else {})
    x.decision = decision
    x.engine = "embedded"
    return x


def _expected_decision(d: Decision) -> dict[str, Any]:
    return {"allow": d.allow, "reasons": [r.model_dump(exclude_none=True) for r in d.reasons],
            "obligations": d.obligations.model_dump(exclude_none=True),
            "policy_revision": d.policy_revision, "engine": "embedded"}


def test_the_decision_record_is_the_models_dump_for_new_and_shared_parts() -> None:
    base = _decision(max_tokens=64, quota=[QuotaLimit(scope="user", key="alice", window="day",
                                                      metric="tokens", limit=10, code="q")])
    for d in (base, base.model_copy(update={"decision_id": "req_2"}), base):
        assert event("request.intent", _exchange(d))["decision"] == _expected_decision(d)


def test_a_decision_with_other_obligations_is_dumped_afresh() -> None:
    first = _decision(max_tokens=64)
    event("request.intent", _exchange(first))
    changed = first.model_copy(update={"obligations": Obligations(max_tokens=8)})
    assert event("request.intent", _exchange(changed))["decision"]["obligations"] == \
        {"max_tokens": 8}
    fewer = first.model_copy(update={"reasons": []})
    assert event("request.intent", _exchange(fewer))["decision"]["reasons"] == []
    assert event("request.intent", _exchange(first))["decision"] == _expected_decision(first)


def test_the_decision_memo_is_bounded() -> None:
    for n in range(auditing._DECISION_PARTS.size + 50):
        d = _decision(max_tokens=n + 1)
        assert event("request.intent", _exchange(d))["decision"]["obligations"] == \
            {"max_tokens": n + 1}
    assert len(auditing._DECISION_PARTS.entries) == auditing._DECISION_PARTS.size


@pytest.mark.parametrize("params", [
    {}, {"temperature": 0.7}, {"temperature": 1, "top_p": 0.5}, {"b": [1, 2], "a": {"z": None}},
    {"stop": ["x" * 400]},  # longer than the memo keeps
])
def test_the_params_digest_is_the_sha256_of_the_canonical_json(params: dict[str, Any]) -> None:
    for _ in range(2):  # a miss, then a hit
        what = event("request.intent", _exchange(_decision(), params))["what"]
        assert what["params_digest"] == sha256_json(params)


def test_the_digest_memo_is_bounded_and_right_after_evictions() -> None:
    rng = random.Random(3)
    values = [{"temperature": rng.random()} for _ in range(auditing._DIGESTS.size * 2)]
    for params in values + values[:20]:
        assert event("request.intent", _exchange(_decision(), params))["what"][
            "params_digest"] == sha256_json(params)
    assert len(auditing._DIGESTS.entries) == auditing._DIGESTS.size
