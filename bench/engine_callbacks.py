#!/usr/bin/env python3
"""The embedded engine's Python extension callbacks: how many run per decision, and what
one costs, in instructions (deterministic on a loaded machine).

    .venv/bin/python bench/engine_callbacks.py count
        the extension calls (name and arguments) of one request-phase decision of the
        shipped library, per caller of bench/policy_cost.py

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/engine_callbacks.py loop MODE K
        K evaluations of a rule making 50 calls of one kind through regorus; run with K and
        with 0, (Ir(K) - Ir(0)) / (50 K) is the cost of one call and its comprehension step.
        MODE: none (no call), native (regorus' own +), noop (a Python extension returning
        its argument: the Rust -> Python call and conversions alone), add (``__arith.add``
        on two ints), mulf (``__arith.mul(0.2, int)``: the Decimal path), floor (``floor``
        of an int).

Only ``loop`` is meant for valgrind: it imports regorus and the arithmetic alone.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LOOP_RULES = {
    "none": "x := i",
    "native": "x := i + 1",
    "noop": "x := __noop(i, 1)",
    "add": "x := __arith.add(i, 1)",
    "mulf": "x := __arith.mul(0.2, i)",
    "floor": "x := floor(i)",
}
CALLS_PER_EVAL = 50


def loop(mode: str, k: int) -> None:
    import regorus

    from pep.policy.builtins_text import arith_add, arith_mul, floor_

    engine = regorus.Engine()
    engine.add_extension("__arith.add", 2, arith_add)
    engine.add_extension("__arith.mul", 2, arith_mul)
    engine.add_extension("floor", 1, floor_)
    engine.add_extension("__noop", 2, lambda a, b: a)
    engine.add_policy("t.rego", "package t\nr := [x | some i in input.xs; "
                      f"{LOOP_RULES[mode]}]\n")
    xs = ",".join(str(500 + i) for i in range(CALLS_PER_EVAL))
    engine.set_input_json(f'{{"xs": [{xs}]}}')
    engine.eval_rule_as_json("data.t.r")
    for _ in range(k):
        engine.eval_rule_as_json("data.t.r")


def count() -> None:
    import asyncio

    import orjson

    from bench.policy_cost import inputs
    from pep.policy import builtins, bundle
    from pep.policy.program import Program

    calls: Counter[str] = Counter()
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def counted(name: str, fn: Any) -> Any:
        def run(*args: Any) -> Any:
            calls[name] += 1
            seen.append((name, args))
            return fn(*args)
        return run

    for name, (nargs, fn) in list(builtins.EXTENSIONS.items()):
        builtins.EXTENSIONS[name] = (nargs, counted(name, fn))
    loaded = bundle.load(Path("policies"))
    program = Program(loaded.modules, loaded.data)
    for who, doc in asyncio.run(inputs("Say hello to the benchmark, please.")).items():
        payload = orjson.dumps(doc).decode()
        program.evaluate("data.regogate.decision", payload)
        calls.clear()
        seen.clear()
        program.evaluate("data.regogate.decision", payload)
        print(f"{who}: {sum(calls.values())} callbacks {dict(calls)}")
        for name, args in seen:
            print(f"    {name}{args}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("count")
    lp = sub.add_parser("loop")
    lp.add_argument("mode", choices=sorted(LOOP_RULES))
    lp.add_argument("k", type=int)
    a = ap.parse_args()
    if a.cmd == "count":
        count()
    else:
        loop(a.mode, a.k)
