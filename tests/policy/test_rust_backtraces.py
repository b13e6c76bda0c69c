"""regorus errors carry no Rust backtrace, even with RUST_BACKTRACE=1 in the environment.

Capturing one symbolises the library: the first capture kept ~60 MB of symbol tables for the
life of the gateway (the support check's arity probe raised one at every start) and each
capture cost milliseconds of CPU. Run in a child process: Rust reads the setting once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import os
    import regorus
    from pep.policy import support
    from pep.policy.program import new_engine

    support.native_arity("object.get")  # the start-up probe: raises inside regorus
    engine = new_engine()
    engine.add_policy("p.rego", "package p\\nx := count(null)\\n")
    try:
        engine.eval_rule("data.p.x")
    except Exception as exc:
        print(repr(str(exc)))
    print(os.environ.get("RUST_LIB_BACKTRACE"))
""")


def _run(extra_env: dict[str, str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "RUST_LIB_BACKTRACE"}
    env.update(PYTHONPATH=str(REPO), RUST_BACKTRACE="1", **extra_env)
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return out.stdout.strip().splitlines()


def test_regorus_errors_capture_no_backtrace_under_rust_backtrace_1() -> None:
    message, setting = _run({})
    assert "requires array/object/set/string argument" in message
    assert "Stack backtrace" not in message
    assert setting == "0"


def test_an_operator_who_asks_for_library_backtraces_keeps_them() -> None:
    message, setting = _run({"RUST_LIB_BACKTRACE": "1"})
    assert setting == "1"
    assert "Stack backtrace" in message
