"""Runs policies/quota/quota_test.rego on the embedded engine (regorus), one pytest case per
Rego test, plus checks that the policy composes under the contract the main decision uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import regorus
import yaml

QUOTA_DIR = Path(__file__).resolve().parents[2] / "policies" / "quota"
TESTS = re.findall(r"^(test_\w+)", (QUOTA_DIR / "quota_test.rego").read_text(), re.MULTILINE)


def _engine() -> Any:
    engine = regorus.Engine()
    engine.add_policy_from_file(str(QUOTA_DIR / "quota.rego"))
    engine.add_policy_from_file(str(QUOTA_DIR / "quota_test.rego"))
    # Bundle convention: policies/quota/limits/data.yaml is mounted at data.quota.limits.
    limits = yaml.safe_load((QUOTA_DIR / "limits" / "data.yaml").read_text())
    engine.add_data({"quota": {"limits": limits}})
    return engine


@pytest.fixture(scope="module")
def engine() -> Any:
    return _engine()


def _value(engine: Any, query: str) -> Any:
    result = json.loads(engine.eval_query_as_json(query)).get("result")
    return result[0]["expressions"][0]["value"] if result else None


def test_the_rego_suite_is_not_empty() -> None:
    assert len(TESTS) >= 20


@pytest.mark.parametrize("name", TESTS)
def test_rego(engine: Any, name: str) -> None:
    assert _value(engine, f"data.regogate.quota_test.{name}") is True, name


def test_deny_reasons_validate_as_contract_reasons(engine: Any) -> None:
    from pep.policy.contract import Reason

    engine.set_input({
        "user": {"sub": "carol", "kind": "user", "groups": ["contractors"], "roles": [],
                 "teams": []},
        "request": {"estimated_tokens": 1},
        "usage": {"user": {"day": {"tokens": 50000}, "minute": {"requests": 60}}},
    })
    reasons = [Reason.model_validate(r) for r in _value(engine, "data.regogate.quota.deny")]
    assert {(r.code, r.quota.window if r.quota else None) for r in reasons} == {
        ("quota_tokens_per_day", "day"),
        ("quota_requests_per_minute", "minute"),
    }


def test_max_tokens_is_a_positive_integer_the_obligation_accepts(engine: Any) -> None:
    from pep.policy.contract import Obligations

    engine.set_input({
        "user": {"sub": "carol", "kind": "user", "groups": ["contractors"], "roles": [],
                 "teams": []},
        "request": {"estimated_tokens": 10},
        "usage": {"user": {"day": {"tokens": 49989.0}}},
    })
    cap = _value(engine, "data.regogate.quota.max_tokens")
    assert Obligations(max_tokens=cap).max_tokens == 1
