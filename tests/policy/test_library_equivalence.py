"""The restructured policy library decides exactly as the library of commit ``6cdf4ad``.

``policies/`` was rewritten for the embedded engine's cost model (issue 14: fewer lookups of
data, rules referenced once, no arithmetic in quota precedence). The reference copy of the
old modules is ``tests/policy/library_6cdf4ad/``; both are compiled by
``pep.policy.program.Program`` (the gateway's engine) on the *same* data and evaluated on many
generated inputs: callers built from the groups, teams, roles, kinds and clients the data
names, every API and model the data knows plus unknown and missing ones, finding types from
the content lists, usage counters just below, at and above every limit, the output phase and
MCP messages. Every decision document (allow, reasons in order, obligations) and the rules
other code reads must be identical. The quota data is varied as well (limits in every section,
custom codes, ``shrink: false``, a counter named at several specificities), because security
teams edit that data, not the Rego.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from pep.policy import bundle
from pep.policy.program import Program
from tests.policy.conftest import POLICIES

REFERENCE = Path(__file__).parent / "library_6cdf4ad"

# Rules of the library that code outside the decision reads (the usage tests, the bundle
# loader's config check) or that custom rules are documented to build on.
RULES = (
    "data.regogate.decision",
    "data.regogate.quota.deny",
    "data.regogate.quota.max_tokens",
    "data.regogate.quota.obligation",
    "data.regogate.quota.effective",
    "data.regogate.access.deny",
    "data.regogate.access.max_tokens",
    "data.regogate.access.reroute",
    "data.regogate.access.model_allowed",
    "data.regogate.cache.obligation",
    "data.regogate.mcp.deny",
    "data.regogate.mcp.quota",
    "data.regogate.config_errors",
)

APIS = (
    "chat.completions",
    "responses",
    "completions",
    "messages",
    "messages.count_tokens",
    "embeddings",
    "models.list",
    "responses.read",
    "responses.delete",
    "audit.read",
    "usage.read",
    "cache.admin",
    "mcp",
    "files.upload",
)
GROUPS = ("ml-team", "contractors", "admins", "auditors", "staff", "sre")
TEAMS = ("research", "sales", "platform", "compliance", "eng")
ROLES = ("admin", "auditor", "reader")
CLIENTS = ("chat-ui", "dev-cli", "support-bot", "batch")
SUBS = ("alice", "bob", "carol", "erin", "dave", "svc-1")
METRICS = ("requests", "prompt_tokens", "completion_tokens", "tokens", "cost_usd")
WINDOWS = ("minute", "hour", "day", "month")
TOOLS = ("echo", "add", "word_count", "admin_report", "shell", "write_file", "unknown_tool")


def _reference_modules() -> dict[str, str]:
    return {
        path.relative_to(REFERENCE).as_posix(): path.read_text()
        for path in sorted(REFERENCE.rglob("*.rego"))
    }


def _limit_thresholds(data: dict[str, Any]) -> list[float]:
    """Every max in the quota and MCP limits, and the share limits' products."""
    found: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "max" and isinstance(value, int | float):
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data.get("quota", {}))
    walk(data.get("gateway", {}).get("mcp", {}).get("limits", {}))
    found += [m * s for m in list(found) for s in (0.2, 0.5)]
    return sorted(set(found))


def _counter(rng: random.Random, thresholds: list[float], estimate: int) -> float:
    t = rng.choice(thresholds)
    value = rng.choice(
        (
            0,
            t - 1,
            t,
            t + 1,
            t - estimate,
            t - estimate + 1,
            t - estimate - 1,
            t / 2,
            rng.randint(0, 100),
        )
    )
    return max(0, value if rng.random() < 0.8 else round(value + rng.random(), 3))


def _usage(
    rng: random.Random, thresholds: list[float], estimate: int, teams: list[str]
) -> dict[str, Any]:
    def windows() -> dict[str, Any]:
        return {
            w: {m: _counter(rng, thresholds, estimate) for m in METRICS if rng.random() < 0.9}
            for w in WINDOWS
            if rng.random() < 0.9
        }

    usage: dict[str, Any] = {}
    if rng.random() < 0.9:
        usage["user"] = windows()
    if rng.random() < 0.5:
        usage["client"] = windows()
    if rng.random() < 0.9:
        usage["teams"] = {t: windows() for t in teams if rng.random() < 0.9}
    for scope in ("user_tool", "tool"):
        if rng.random() < 0.5:
            usage[scope] = {"day": {"requests": _counter(rng, thresholds, 1)}}
    return usage


def _subset(rng: random.Random, items: tuple[str, ...], most: int = 2) -> list[str]:
    return rng.sample(items, rng.randint(0, most))


def generate_input(rng: random.Random, data: dict[str, Any]) -> dict[str, Any]:
    gateway = data["gateway"]
    models = [*gateway["models"], "gpt-unknown", ""]
    content = gateway["content"]
    finding_types = tuple(sorted({*content["redact"], *content["deny"], "invisible_text", "url"}))
    output_types = tuple(sorted({*content["output_redact"], *content["output_deny"], "url"}))
    teams = _subset(rng, TEAMS)
    estimate = rng.choice((0, 1, 10, 100, 4000, 49_999, 50_000))
    api = rng.choice(APIS)
    request: dict[str, Any] = {
        "id": "req-1",
        "api": api,
        "model": rng.choice(models),
        "stream": rng.random() < 0.5,
        "max_tokens": rng.choice((None, 16, 100_000)),
        "params": {},
        "tools": [],
        "messages": [{"role": "user", "text": "hi"}],
        "text": "hi",
        "estimated_tokens": estimate,
    }
    roll = rng.random()
    if roll < 0.03:
        del request["api"]
    elif roll < 0.05:
        request["api"] = 7
    if rng.random() < 0.05:
        del request["model"]
    if api == "mcp":
        request["model"] = ""
        request["mcp"] = {
            "server": rng.choice(("demo", "demo", "other", "")),
            "method": rng.choice(
                ("tools/call", "tools/call", "tools/list", "resources/read", "response")
            ),
            "tool": rng.choice((*TOOLS, None)),
            "arguments": {},
            "resource_uri": None,
            "prompt": None,
        }
    types = sorted(set(_subset(rng, finding_types, 3)))
    sub = rng.choice(SUBS)
    doc: dict[str, Any] = {
        "version": "v1",
        "user": {
            "sub": sub,
            "issuer": "https://idp.test",
            "kind": rng.choice(("user", "service")),
            "email": f"{sub}@example.com" if rng.random() < 0.5 else None,
            "name": None,
            "groups": _subset(rng, GROUPS),
            "roles": _subset(rng, ROLES),
            "teams": teams,
            "team": teams[0] if teams and rng.random() < 0.8 else None,
            "claims": {},
        },
        "client": {"id": rng.choice((*CLIENTS, None))},
        "actor": None,
        "request": request,
        "content": {
            "findings": [
                {
                    "type": t,
                    "message_index": 0,
                    "start": 0,
                    "end": 1,
                    "detector": t,
                    "location": "messages[0]",
                }
                for t in types
            ],
            "types": types,
            "truncated": False,
        },
        "usage": _usage(rng, _limit_thresholds(data), estimate, teams),
        "time": {
            "now_ns": 1767323045000000000,
            "rfc3339": "2026-01-02T03:04:05Z",
            "weekday": "Friday",
            "hour": 3,
        },
    }
    roll = rng.random()
    if roll < 0.2:
        doc["output"] = {
            "text": "answer",
            "findings": [],
            "types": sorted(set(_subset(rng, output_types, 2))),
            "final": rng.random() < 0.5,
        }
    elif roll < 0.23:
        doc["output"] = rng.choice((None, False, {}))
    return doc


def _limit(rng: random.Random, scope: str, **extra: Any) -> dict[str, Any]:
    limit: dict[str, Any] = {
        "scope": scope,
        "metric": rng.choice(METRICS),
        "window": rng.choice(WINDOWS),
        "max": rng.choice((0, 1, 10, 60, 1000, 50_000)),
    }
    if rng.random() < 0.3:
        limit["name"] = f"{scope} limit {rng.randint(0, 9)}"
    if rng.random() < 0.2:
        limit["code"] = f"custom_{scope}"
    if rng.random() < 0.3:
        limit["shrink"] = rng.random() < 0.5
    limit.update(extra)
    return limit


def quota_variant(seed: int) -> dict[str, Any]:
    """data.quota.limits with limits in every section, some on the same counter."""
    rng = random.Random(seed)
    same = {"metric": "tokens", "window": "day"}

    def some(scope_choices: tuple[str, ...], k: int) -> list[dict[str, Any]]:
        return [_limit(rng, rng.choice(scope_choices)) for _ in range(k)]

    return {
        "everyone": [*some(("user", "team", "client"), 2), _limit(rng, "user", **same)],
        "users": {
            s: [_limit(rng, "user", **same), *some(("user", "client"), 1)]
            for s in rng.sample(SUBS, 3)
        },
        "groups": {
            g: [*some(("user", "team", "client"), 2), _limit(rng, "user", **same)]
            for g in rng.sample(GROUPS, 3)
        },
        "roles": {r: some(("user", "client"), 1) for r in rng.sample(ROLES, 2)},
        "kinds": {"service": some(("user", "client"), 2)},
        "clients": {c: some(("client", "user"), 1) for c in rng.sample(CLIENTS, 2)},
        "teams": {
            t: [
                _limit(rng, "team", metric="cost_usd", window="month", max=500),
                {
                    "scope": "user",
                    "metric": "cost_usd",
                    "window": "month",
                    "share_of_team": rng.choice((0, 0.2, 1)),
                },
                *some(("user", "team"), 2),
            ]
            for t in rng.sample(TEAMS, 3)
        },
    }


def _pair(data: dict[str, Any]) -> tuple[Program, Program]:
    live = bundle.load(POLICIES)
    return Program(live.modules, data), Program(_reference_modules(), data)


def _compare(new: Program, old: Program, doc: dict[str, Any], rules: tuple[str, ...]) -> None:
    payload = orjson.dumps(doc).decode()
    for rule in rules:
        got, expected = new.evaluate(rule, payload), old.evaluate(rule, payload)
        assert got == expected, (rule, doc)


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    return bundle.load(POLICIES).data


def test_the_reference_copy_is_the_whole_old_library() -> None:
    live = {name for name in bundle.load(POLICIES).modules}
    assert set(_reference_modules()) == live


def test_shipped_data_decisions_are_identical_on_generated_inputs(
    shipped: dict[str, Any],
) -> None:
    new, old = _pair(shipped)
    rng = random.Random(14)
    decided = {"allow": 0, "deny": 0, "output": 0, "mcp": 0, "quota": 0}
    for _ in range(800):
        doc = generate_input(rng, shipped)
        _compare(new, old, doc, RULES[:1])
        _, decision = new.evaluate(RULES[0], orjson.dumps(doc).decode())
        decided["allow" if decision["allow"] else "deny"] += 1
        decided["output"] += "output" in doc and bool(doc["output"])
        decided["mcp"] += doc["request"].get("api") == "mcp"
        decided["quota"] += any(str(r["code"]).startswith("quota_") for r in decision["reasons"])
    # The generator reaches every kind of decision (a generator that only produced
    # refusals, say, would prove little).
    assert min(decided.values()) >= 20, decided


def test_shipped_data_rules_read_elsewhere_are_identical(shipped: dict[str, Any]) -> None:
    new, old = _pair(shipped)
    rng = random.Random(1414)
    for _ in range(300):
        _compare(new, old, generate_input(rng, shipped), RULES)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_quota_data_variants_decide_identically(shipped: dict[str, Any], seed: int) -> None:
    data = copy.deepcopy(shipped)
    data["quota"] = {"limits": quota_variant(seed)}
    new, old = _pair(data)
    rng = random.Random(seed * 100)
    quota_reasons = 0
    for _ in range(400):
        doc = generate_input(rng, data)
        if rng.random() < 0.7:  # model calls, where the quota rules apply
            doc["request"]["api"] = "chat.completions"
            doc.pop("output", None)
        _compare(new, old, doc, RULES[:5])
        _, decision = new.evaluate(RULES[0], orjson.dumps(doc).decode())
        quota_reasons += any(
            str(r["code"]).startswith(("quota_", "custom_")) for r in decision["reasons"]
        )
    assert quota_reasons >= 20


def test_a_caller_named_by_no_limit_has_no_effective_limits(shipped: dict[str, Any]) -> None:
    """Undefined, not an empty set, as before (custom rules may test ``not effective``)."""
    new, old = _pair(shipped)
    doc = generate_input(random.Random(0), shipped)
    doc["user"].update(sub="dave", groups=["staff"], teams=[], roles=[], kind="user")
    doc["client"]["id"] = "dev-cli"
    payload = orjson.dumps(doc).decode()
    assert new.evaluate("data.regogate.quota.effective", payload) == (False, None)
    assert old.evaluate("data.regogate.quota.effective", payload) == (False, None)
