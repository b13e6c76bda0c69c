#!/usr/bin/env python3
"""Time the shipped policy library on the embedded engine, per rule, for typical inputs.

    .venv/bin/python bench/policy_cost.py [--bundle policies] [--n 500]

Prints microseconds per evaluation of the full decision (request and output phase) and of
each module's main rules, for a few representative callers with populated usage counters.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from pep.policy.embedded import EmbeddedEngine
from pep.policy.input import build_policy_input
from pep.principal import Principal
from pep.request import NormalizedRequest
from pep.usage.settings import UsageSettings
from pep.usage.tracker import open_tracker

CALLERS = {
    "alice (ml-team)": Principal(sub="alice", issuer="http://idp", groups=("ml-team",),
                                 teams=("research",), client_id="chat-ui", email="alice@example.com"),
    "bob (contractor)": Principal(sub="bob", issuer="http://idp", groups=("contractors",),
                                  teams=("sales",), client_id="chat-ui"),
    "carol (admin)": Principal(sub="carol", issuer="http://idp", groups=("admins",),
                               teams=("platform",), client_id="chat-ui"),
}
RULES = ["data.regogate.decision", "data.regogate.access.deny", "data.regogate.quota.deny",
         "data.regogate.quota.max_tokens", "data.regogate.residency.deny",
         "data.regogate.content.deny"]


async def inputs(prompt: str) -> dict[str, dict[str, Any]]:
    tracker = open_tracker(UsageSettings())
    await tracker.start()
    out = {}
    for name, p in CALLERS.items():
        await tracker.record(p, p.client_id, "mock-gpt", 120, 340, estimated=False)
        usage = await tracker.snapshot(p, p.client_id)
        req = NormalizedRequest(api="chat.completions", inbound_format="openai", model="mock-gpt",
                                stream=False, body={}, roles=["user"], texts=[prompt],
                                estimated_tokens=len(prompt) // 4 + 4)
        out[name] = build_policy_input(p, req, request_id="req_bench", source_ip="127.0.0.1",
                                       usage=usage, provider="mock")
    return out


def per_call_us(fn: Any, n: int) -> float:
    for _ in range(20):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


async def main(bundle: Path, n: int) -> None:
    engine = EmbeddedEngine(bundle, hot_reload=False)
    await engine.start()
    raw = engine._policy.program._engine  # noqa: SLF001 - a benchmark may look inside
    for name, doc in (await inputs("Say hello to the benchmark, please.")).items():
        print(f"{name}")
        out_doc = {**doc, "output": {"text": "hello", "findings": [], "types": [], "final": True}}
        loop = asyncio.get_running_loop()
        for label, d in (("decision (request phase)", doc), ("decision (output phase)", out_doc)):
            t = time.perf_counter()
            for _ in range(n):
                await engine.evaluate(d)
            print(f"  {label:34s} {(time.perf_counter() - t) / n * 1e6:8.1f} us")
        raw.set_input_json(orjson.dumps(doc).decode())
        for rule in RULES[1:]:
            print(f"  {rule:34s} {per_call_us(lambda r=rule: raw.eval_rule_as_json(r), n):8.1f} us")
        del loop


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=Path("policies"))
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    asyncio.run(main(a.bundle, a.n))
