"""``regogate policy test``: run every ``test_*`` rule of the bundle's ``*_test.rego`` files.

Two runners, one report: the ``opa`` binary (``opa test --format=json``) when one is on PATH
or in ``OPA_BIN``, otherwise the embedded engine evaluating each test rule. A test passes when
its rule is ``true``; false or undefined is FAIL, an evaluation error is ERROR (as in OPA).
Rules named ``todo_test_*`` are reported as SKIPPED.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import orjson

from pep.policy import bundle as bundle_mod
from pep.policy.compiled import load_modules, new_engine
from pep.policy.engine import PolicyError
from pep.policy.program import Program
from pep.policy.rego_ast import module_info

Outcome = Literal["PASS", "FAIL", "ERROR", "SKIPPED"]


@dataclass(frozen=True)
class TestResult:
    file: str
    package: str
    name: str
    outcome: Outcome
    duration_ns: int = 0
    message: str = ""

    @property
    def rule(self) -> str:
        return f"data.{self.package}.{self.name}"


def find_opa() -> str | None:
    explicit = os.environ.get("OPA_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("opa")


def run_embedded(root: Path) -> list[TestResult]:
    loaded = bundle_mod.load(root)
    # The tests run as the gateway runs the policy (Program: refusals, exact arithmetic,
    # OPA's non-strict builtin errors), so a passing test means what it says in production.
    program = Program({**loaded.modules, **loaded.tests}, loaded.data)
    engine = new_engine()
    load_modules(engine, {**loaded.modules, **loaded.tests}, {})  # for the AST only
    results: list[TestResult] = []
    test_files = set(loaded.tests)
    for entry in orjson.loads(engine.get_ast_as_json()):
        info = module_info(entry)
        if info.file not in test_files:
            continue
        seen: set[str] = set()
        for rule in info.rules:
            name = rule.name
            if name in seen or rule.kind == "Func":
                continue
            if name.startswith("todo_test_"):
                seen.add(name)
                results.append(TestResult(info.file, info.package, name, "SKIPPED"))
                continue
            if not name.startswith("test_"):
                continue
            seen.add(name)
            results.append(_run_one(program, info.file, info.package, name))
    return results


def _run_one(program: Program, file: str, package: str, name: str) -> TestResult:
    path = f"data.{package}.{name}"
    start = time.perf_counter_ns()
    fallbacks = program.fallbacks
    try:
        defined, value = program.evaluate(path, None)
    except PolicyError as exc:
        took = time.perf_counter_ns() - start
        return TestResult(file, package, name, "ERROR", took, str(exc))
    took = time.perf_counter_ns() - start
    if defined and value is True:
        return TestResult(file, package, name, "PASS", took)
    if program.fallbacks != fallbacks:
        # A builtin error made an expression undefined (OPA's semantics, as the gateway
        # decides); a test that then fails is reported with the error that caused it.
        return TestResult(file, package, name, "ERROR", took,
                          f"builtin error: {program.last_fallback_error}")
    return TestResult(file, package, name, "FAIL", took)


def run_opa(root: Path, opa: str) -> list[TestResult]:
    proc = subprocess.run(
        [opa, "test", "--format=json", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    try:
        raw = json.loads(proc.stdout or "[]")
    except ValueError as exc:
        raise RuntimeError(f"opa test failed: {proc.stderr.strip() or proc.stdout[:500]}") from exc
    results: list[TestResult] = []
    for item in raw:
        file = str(item.get("location", {}).get("file", ""))
        try:
            file = Path(file).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
        outcome: Outcome = "PASS"
        message = ""
        if item.get("skip"):
            outcome = "SKIPPED"
        elif item.get("error"):
            outcome = "ERROR"
            message = str(item["error"].get("message", item["error"]))
        elif item.get("fail"):
            outcome = "FAIL"
        pkg = str(item.get("package", "")).removeprefix("data.")
        results.append(
            TestResult(
                file, pkg, str(item.get("name")), outcome, int(item.get("duration", 0)), message
            )
        )
    if not results and proc.returncode != 0:
        raise RuntimeError(f"opa test failed: {proc.stderr.strip()}")
    return results


def run(
    root: Path, *, engine: Literal["auto", "embedded", "opa"] = "auto"
) -> tuple[str, list[TestResult]]:
    """Returns (runner name, results)."""
    opa = find_opa() if engine in ("auto", "opa") else None
    if engine == "opa" and opa is None:
        raise RuntimeError("no opa binary on PATH or in OPA_BIN")
    if opa is not None:
        return "opa", run_opa(root, opa)
    return "embedded", run_embedded(root)


def report(results: list[TestResult], out: IO[str], *, verbose: bool = False) -> bool:
    """Print the opa-test style report; returns True when nothing failed."""
    by_file: dict[str, list[TestResult]] = {}
    for r in results:
        by_file.setdefault(r.file, []).append(r)
    for file in sorted(by_file):
        shown = [r for r in by_file[file] if verbose or r.outcome in ("FAIL", "ERROR")]
        if not shown:
            continue
        out.write(f"{file}:\n")
        for r in shown:
            took = f" ({r.duration_ns / 1e6:.3f}ms)" if r.outcome != "SKIPPED" else ""
            out.write(f"{r.rule}: {r.outcome}{took}\n")
            if r.message:
                out.write(f"  {r.message}\n")
    passed = sum(r.outcome == "PASS" for r in results)
    failed = sum(r.outcome == "FAIL" for r in results)
    errors = sum(r.outcome == "ERROR" for r in results)
    skipped = sum(r.outcome == "SKIPPED" for r in results)
    total = len(results)
    out.write("-" * 80 + "\n")
    if passed:
        out.write(f"PASS: {passed}/{total}\n")
    if failed:
        out.write(f"FAIL: {failed}/{total}\n")
    if errors:
        out.write(f"ERROR: {errors}/{total}\n")
    if skipped:
        out.write(f"SKIPPED: {skipped}/{total}\n")
    if total == 0:
        out.write("no tests found\n")
    return failed == 0 and errors == 0 and total > 0
