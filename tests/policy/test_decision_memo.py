"""The embedded engine's decision memo (pep.policy.validated) answers exactly what
parse_decision answers: same decisions, same refusals, every time."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest

from pep.policy.engine import PolicyError, parse_decision
from pep.policy.validated import DecisionMemo

# What the shipped policy returns for a member of a team with a budget.
SHIPPED: dict[str, Any] = {
    "allow": True,
    "obligations": {
        "audit_content": "digest",
        "cache": {"mode": "exact", "sampled": True, "scope": "user", "ttl_s": 300},
        "max_tokens": 4096,
        "quota": [{"code": "quota_cost_usd_per_month", "key": "research", "limit": 500,
                   "metric": "cost_usd", "name": "research monthly budget", "scope": "team",
                   "shrink": True, "window": "month"}],
    },
    "reasons": [],
}


def variants() -> list[Any]:
    """The shipped document and near misses: each a change pydantic's strict mode decides
    on (types that equal as Python values but not as JSON, unknown keys, bad values)."""
    out: list[Any] = [SHIPPED, None, [], "allow", {"allow": True}, {"allow": False},
                      {"allow": 1}, {"allow": "true"}, {"allow": True, "reasons": {}},
                      {"allow": False, "reasons": [{"code": "x", "message": "no"}]},
                      {"allow": False, "reasons": [{"code": 1}]},
                      {"allow": True, "obligations": {"launch_missiles": True}},
                      {"allow": True, "policy_revision": "from-policy"},
                      {"allow": True, "decision_id": "from-policy"},
                      {"allow": True, "extra": 1}]
    cases: list[tuple[tuple[Any, ...], list[Any]]] = [
        (("obligations", "max_tokens"), [4096, 4096.0, 4096.5, True, "4096", 0, -1, None]),
        (("obligations", "audit_content"), ["digest", "full", "everything", 1]),
        (("obligations", "cache", "ttl_s"), [300, 300.0, 0, "300", False]),
        (("obligations", "quota", 0, "limit"), [500, 500.0, -1, "500", True]),
        (("obligations", "quota", 0, "shrink"), [True, 1, "true"]),
        (("obligations", "redact"), [["email"], "email", [1], []]),
    ]
    for path, values in cases:
        for v in values:
            doc = copy.deepcopy(SHIPPED)
            node: Any = doc
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = v
            out.append(doc)
    return out


def outcome(fn: Any, raw: Any, **kw: Any) -> Any:
    try:
        return fn(raw, **kw).model_dump()
    except PolicyError as exc:
        return ("error", exc.code, str(exc))


@pytest.mark.parametrize("order", ["forward", "reverse", "twice"])
def test_the_memo_decides_every_document_exactly_as_parse_decision(order: str) -> None:
    docs = variants()
    seq = {"forward": docs, "reverse": docs[::-1], "twice": list(itertools.chain(docs, docs))}[order]
    memo = DecisionMemo()
    for i, raw in enumerate(seq):
        kw = {"revision": f"rev{i % 3}", "decision_id": f"req_{i}"}
        assert outcome(memo.parse, raw, **kw) == outcome(parse_decision, raw, **kw), raw


def test_a_hit_is_a_new_decision_carrying_this_requests_ids() -> None:
    memo = DecisionMemo()
    a = memo.parse(SHIPPED, revision="r1", decision_id="req_a")
    b = memo.parse(copy.deepcopy(SHIPPED), revision="r2", decision_id="req_b")
    assert memo.hits == 1 and memo.misses == 1
    assert a is not b
    assert (a.decision_id, a.policy_revision) == ("req_a", "r1")
    assert (b.decision_id, b.policy_revision) == ("req_b", "r2")
    assert b == parse_decision(SHIPPED, revision="r2", decision_id="req_b")


def test_refused_documents_are_never_remembered() -> None:
    memo = DecisionMemo()
    bad = {"allow": True, "obligations": {"launch_missiles": True}}
    for _ in range(3):
        with pytest.raises(PolicyError) as err:
            memo.parse(bad, revision="r", decision_id="req")
        assert err.value.code == "unknown_obligation"
    assert memo.hits == 0


def test_the_memo_is_bounded() -> None:
    memo = DecisionMemo(size=8)
    for n in range(50):
        memo.parse({"allow": True, "obligations": {"max_tokens": n + 1}}, revision="r",
                   decision_id="req")
    assert len(memo._entries) == 8
    # The newest are kept; the oldest were evicted.
    memo.parse({"allow": True, "obligations": {"max_tokens": 50}}, revision="r", decision_id="x")
    assert memo.hits == 1


def test_a_document_json_cannot_express_skips_the_memo() -> None:
    memo = DecisionMemo()
    huge = {"allow": True, "obligations": {"max_tokens": 1 << 70}}
    assert outcome(memo.parse, huge, revision="r", decision_id="q") == outcome(
        parse_decision, huge, revision="r", decision_id="q")
    assert memo.hits == memo.misses == 0
