"""Real counters fed to the real quota policy: the PEP counts, Rego decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import regorus

from pep.principal import Principal
from pep.usage.counters import CounterTracker
from tests.usage.conftest import TrackerFactory

QUOTA = Path(__file__).resolve().parents[2] / "policies" / "quota" / "quota.rego"

LIMITS = {
    "groups": {"contractors": [{"scope": "user", "metric": "tokens", "window": "day", "max": 1000}]},
    "users": {"carol": [{"scope": "user", "metric": "tokens", "window": "day", "max": 5000}]},
    "teams": {"research": [{"scope": "team", "metric": "tokens", "window": "day", "max": 4000}]},
}

CAROL = Principal(sub="carol", issuer="https://idp", groups=("contractors",), teams=("research",))
CODY = Principal(sub="cody", issuer="https://idp", groups=("contractors",), teams=("research",))


def _decide(usage: dict[str, Any], who: Principal) -> tuple[list[dict[str, Any]], Any]:
    engine = regorus.Engine()
    engine.add_policy_from_file(str(QUOTA))
    engine.add_data({"quota": {"limits": LIMITS}})
    engine.set_input({
        "user": {"sub": who.sub, "kind": who.kind, "groups": list(who.groups),
                 "roles": list(who.roles), "teams": list(who.teams)},
        "request": {"estimated_tokens": 0},
        "usage": usage,
    })

    def value(q: str) -> Any:
        res = json.loads(engine.eval_query_as_json(q)).get("result")
        return res[0]["expressions"][0]["value"] if res else None

    return value("data.regogate.quota.deny"), value("data.regogate.quota.max_tokens")


async def test_two_replicas_enforce_one_combined_limit(make_redis_tracker: TrackerFactory) -> None:
    a, b = await make_redis_tracker(), await make_redis_tracker()
    await a.record(CODY, None, "mock-gpt", 300, 300, estimated=False)
    deny, cap = _decide(await b.snapshot(CODY, None), CODY)
    assert deny == [] and cap == 400
    # Each replica alone has seen less than the limit; together they reach it.
    await b.record(CODY, None, "mock-gpt", 200, 200, estimated=False)
    for replica in (a, b):
        deny, _ = _decide(await replica.snapshot(CODY, None), CODY)
        assert [r["code"] for r in deny] == ["quota_tokens_per_day"]


async def test_user_override_lets_a_user_pass_the_group_limit(tracker: CounterTracker) -> None:
    await tracker.record(CAROL, None, "mock-gpt", 1500, 0, estimated=False)
    deny, cap = _decide(await tracker.snapshot(CAROL, None), CAROL)
    # min(carol's 5000 - 1500, the team's 4000 - 1500)
    assert deny == [] and cap == 2500


async def test_team_budget_binds_a_user_with_a_higher_personal_limit(
    tracker: CounterTracker,
) -> None:
    await tracker.record(CODY, None, "mock-gpt", 900, 0, estimated=False)
    await tracker.record(CAROL, None, "mock-gpt", 2000, 0, estimated=False)
    await tracker.record(CAROL, None, "mock-gpt", 600, 600, estimated=False)  # team: 4100
    deny, _ = _decide(await tracker.snapshot(CAROL, None), CAROL)
    assert [(r["code"], r["quota"]["scope"]) for r in deny] == [("quota_tokens_per_day", "team")]
    # Cody is under his own limit too, but the team he shares is spent.
    deny, _ = _decide(await tracker.snapshot(CODY, None), CODY)
    assert [r["quota"]["scope"] for r in deny] == ["team"]


@pytest.mark.parametrize("tokens, denied", [(999, False), (1000, True)])
async def test_group_limit_denies_exactly_at_the_limit(
    tracker: CounterTracker, tokens: int, denied: bool
) -> None:
    await tracker.record(CODY, None, "mock-gpt", tokens, 0, estimated=False)
    deny, _ = _decide(await tracker.snapshot(CODY, None), CODY)
    assert bool(deny) is denied
