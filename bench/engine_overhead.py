#!/usr/bin/env python3
"""CPU per decision of the shipped library: the embedded engine as regogate runs it
(``Program``: exact arithmetic, Python builtins, containment) against plain regorus on the
unmodified sources with only the original extensions, interleaved in one process so both
see the same machine load.

    .venv/bin/python bench/engine_overhead.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import regorus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.policy_cost import inputs  # noqa: E402
from pep.policy import builtins, bundle  # noqa: E402
from pep.policy.program import Program  # noqa: E402

RULE = "data.regogate.decision"
ORIGINAL = ("crypto.", "io.jwt.decode")  # the extensions regogate had before Program


def plain_regorus(loaded: bundle.Bundle) -> Any:
    engine = regorus.Engine()
    for name, (nargs, fn) in builtins.EXTENSIONS.items():
        if name.startswith(ORIGINAL) and not name.startswith("io.jwt.decode_"):
            engine.add_extension(name, nargs, fn)
    for name, src in loaded.modules.items():
        engine.add_policy(name, src)
    engine.add_data_json(orjson.dumps(loaded.data).decode())
    return engine


def main(rounds: int) -> None:
    loaded = bundle.load(Path("policies"))
    docs = asyncio.run(inputs("Say hello to the benchmark, please."))
    payloads = [orjson.dumps(d).decode() for d in docs.values()]
    raw = plain_regorus(loaded)
    program = Program(loaded.modules, loaded.data)

    def run_raw(j: str) -> None:
        raw.set_input_json(j)
        raw.eval_rule_as_json(RULE)

    def run_program(j: str) -> None:
        program.evaluate(RULE, j)

    results: dict[str, list[float]] = {"plain regorus": [], "regogate Program": []}
    for _ in range(rounds):
        for label, fn in (("plain regorus", run_raw), ("regogate Program", run_program)):
            t = time.process_time()
            for _ in range(60):
                for j in payloads:
                    fn(j)
            results[label].append((time.process_time() - t) / (60 * len(payloads)) * 1e6)
    for label, values in results.items():
        print(f"{label:18s} CPU per decision: min {min(values):6.1f} us, "
              f"median {statistics.median(values):6.1f} us")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    main(ap.parse_args().rounds)
