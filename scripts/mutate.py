"""Mutation testing of the security core with mutmut 3 (run by ``python3 scripts/dev.py mutate``).

    dev.py mutate                      # every target, every mutant, kill rate per target
    dev.py mutate auth obligations     # some targets
    dev.py mutate --sample 60 --seed 1 # a fixed-seed sample of 60 mutants over the targets (CI)
    dev.py mutate --since main         # only mutants of target files changed since a git ref
    dev.py mutate --check              # exit 1 when a target is under its bar (CI gate)
    dev.py mutate auth --only pep/auth/claims.py   # one module of a target

Each target names its modules and the tests that cover them, and runs in its own work
directory ``.mutmut/<target>/`` (symlinks to the source tree plus a generated pyproject.toml
with a ``[tool.mutmut]`` section: mutmut reads its settings from the current directory's
pyproject.toml only). mutmut then maps each mutated function to the tests that reach it, so
each mutant runs only those. Results (``mutants/`` in the work directory) are reused while the
code is unchanged.

Surviving mutants that are equivalent (no test can tell them apart from the original) are
listed with the reason in docs/testing.md, as table rows starting with the mutant's name in
backquotes; they are set aside in the kill rate. Any other survivor is a test gap.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutmut"
DOC = ROOT / "docs" / "testing.md"
LINKED = ("pep", "adapters", "idp", "tests", "policies", "docs", "bench", "scripts")


@dataclass(frozen=True)
class Target:
    modules: tuple[str, ...]  # globs relative to the repository root
    tests: tuple[str, ...]
    bar: float | None = 0.90  # minimum kill rate (equivalents set aside); None: measured only
    extra_pytest: tuple[str, ...] = field(default_factory=tuple)


TARGETS: dict[str, Target] = {
    "auth": Target(("pep/auth/*.py",), ("tests/auth", "tests/e2e/test_identity_e2e.py"),
                   extra_pytest=("--deselect", "tests/auth/test_interop.py")),
    "obligations": Target(("pep/obligations.py",),
                          ("tests/policy/test_obligations.py", "tests/e2e/test_token_cap_e2e.py")),
    # contract.py is declarations (pydantic models: mutmut mutates function bodies only); the
    # function that enforces the contract is parse_decision in engine.py.
    "contract": Target(("pep/policy/contract.py", "pep/policy/engine.py"),
                       ("tests/policy/test_contract.py", "tests/policy/test_engines.py")),
    "request": Target(("pep/request.py",),
                      ("tests/test_request.py", "tests/policy/test_input_builder.py")),
    # Not tests/audit/test_crash.py: the gateways it kills are subprocesses, which cannot
    # import mutmut's trampolined copy of the tree.
    "audit-verify": Target(("pep/audit/verify.py", "pep/audit/checkpoints.py"),
                           ("tests/audit/test_verify_tamper.py", "tests/audit/test_verify_edges.py",
                            "tests/audit/test_sqlite_store.py", "tests/audit/test_integrity.py",
                            "tests/audit/test_signing_keys.py", "tests/audit/test_witness.py",
                            "tests/audit/test_cli.py", "tests/audit/test_mut_verify.py",
                            "tests/audit/test_mut_checkpoints.py")),
    "content": Target(("pep/content/*.py",),
                      ("tests/content", "tests/e2e/test_content_edges_e2e.py")),
    # The one validation step before policy (GUIDE.md 3.12): body, JSON, forbidden keys.
    "validation": Target(("pep/validation.py",),
                         ("tests/test_request.py", "tests/e2e/test_validation_e2e.py",
                          "tests/e2e/test_bodies_e2e.py", "tests/e2e/test_connections_e2e.py")),
}


def equivalents() -> dict[str, str]:
    """Documented equivalent mutants: ``| `name` | reason |`` rows of docs/testing.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### Equivalent mutants", 1)[-1].split("\n### ", 1)[0]
    rows = re.findall(r"^\|\s*`([\w.]+__mutmut_\d+)`\s*\|\s*(.+?)\s*\|\s*$", section, flags=re.M)
    return dict(rows)


def prepare(name: str, target: Target) -> Path:
    work = WORK / name
    work.mkdir(parents=True, exist_ok=True)
    for entry in LINKED:
        link = work / entry
        if not link.is_symlink():
            link.symlink_to(ROOT / entry)
    base = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tests = [*target.tests, *target.extra_pytest]
    section = (
        "\n[tool.mutmut]\n"
        'source_paths = ["pep"]\n'
        f"only_mutate = {json.dumps(list(target.modules))}\n"
        'also_copy = ["adapters", "idp", "policies", "docs", "bench", "scripts"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:cov", "-q"]\n'
    )
    generated = base + section
    path = work / "pyproject.toml"
    if not path.exists() or path.read_text(encoding="utf-8") != generated:
        path.write_text(generated, encoding="utf-8")
    return work


JOBS: list[str] = []  # ["--max-children", N] when --jobs is given (mutmut's default: every core)


def mutmut(work: Path, names: list[str], *, quiet: bool = False) -> int:
    exe = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([str(exe), "run", *JOBS, *names], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if out.returncode != 0 and not quiet:
        print(out.stdout[-4000:])
    return out.returncode


def results(work: Path) -> dict[str, int | None]:
    codes: dict[str, int | None] = {}
    for meta in (work / "mutants").rglob("*.meta"):
        codes.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return codes


def all_names(work: Path, target: Target) -> list[str]:
    """Every mutant of the target's modules, as listed in mutmut's per-file .meta records."""
    names: set[str] = set()
    for pattern in target.modules:
        for meta in (work / "mutants").glob(pattern + ".meta"):
            names.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return sorted(names, key=_natural)


def _natural(name: str) -> tuple[str, int]:
    head, _, n = name.rpartition("_")
    return head, int(n) if n.isdigit() else 0


def changed_files(ref: str) -> set[str]:
    out = subprocess.run(["git", "diff", "--name-only", f"{ref}...HEAD"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    dirty = subprocess.run(["git", "diff", "--name-only", "HEAD"], cwd=ROOT,
                           capture_output=True, text=True, check=True)
    return set(out.stdout.split()) | set(dirty.stdout.split())


def in_files(name: str, files: set[str]) -> bool:
    module = name.rsplit(".", 1)[0]
    return module.replace(".", "/") + ".py" in files


def main(argv: list[str]) -> int:
    from mutmut.stats import status_by_exit_code

    ap = argparse.ArgumentParser(prog="dev.py mutate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*", metavar="target",
                    help=f"one of {', '.join(TARGETS)} (default: all)")
    ap.add_argument("--sample", type=int, help="run a fixed-seed sample of N mutants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--since", help="only mutants of files changed since this git ref")
    ap.add_argument("--only", help="only this module of the target (e.g. pep/auth/claims.py)")
    ap.add_argument("--check", action="store_true",
                    help="fail when a sampled/complete target is under its kill-rate bar, or a "
                         "sampled mutant survives that docs/testing.md does not list")
    ap.add_argument("--jobs", type=int, help="mutants run at once (default: one per core)")
    args = ap.parse_args(argv)
    if args.jobs:
        JOBS[:] = ["--max-children", str(args.jobs)]
    chosen = args.targets or list(TARGETS)
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown:
        ap.error(f"unknown target {unknown[0]!r}; targets: {', '.join(TARGETS)}")
    equiv = equivalents()
    rng = random.Random(args.seed)
    failed = False
    for name in chosen:
        target = TARGETS[name]
        if args.only:
            target = replace(target, modules=(args.only,))
            name = f"{name}-{Path(args.only).stem}"
        work = prepare(name, target)
        selected: list[str] | None = None
        if args.sample is not None or args.since:
            # mutmut has no "generate only": a run for a name that matches nothing writes the
            # mutants and the test map, then stops with "nothing matches" (expected).
            mutmut(work, ["pep.__no_such_mutant__*"], quiet=True)
            pool = all_names(work, target)
            if args.since:
                files = changed_files(args.since)
                pool = [n for n in pool if in_files(n, files)]
            if args.sample is not None:
                share = max(1, round(args.sample / len(chosen)))
                pool = sorted(rng.sample(pool, min(share, len(pool))), key=_natural)
            selected = pool
            if not selected:
                print(f"{name}: no mutants selected")
                continue
        if selected is None:
            # mutmut keeps a verdict until the mutated function changes; a survivor must be
            # retried because tests may have changed since (a named mutant always runs).
            before = set(all_names(work, target)) if (work / "mutants").exists() else set()
            retry = [k for k, v in results(work).items() if k in before and v in (0, 5, 33)]
            code = mutmut(work, [])
            if code == 0 and retry:
                code = mutmut(work, retry)
        else:
            code = mutmut(work, selected)
        if code != 0:
            print(f"{name}: mutmut failed")
            failed = True
            continue
        codes = results(work)
        if selected is not None:
            codes = {k: v for k, v in codes.items() if k in set(selected)}
        else:
            names = set(all_names(work, target))
            codes = {k: v for k, v in codes.items() if k in names}
        status = {k: status_by_exit_code[v] for k, v in codes.items()}
        tally = Tally.of(status, equiv)
        print(f"{name}: {tally}")
        modules = by_module(status)
        if len(modules) > 1:
            for module, part in modules.items():
                print(f"  {module}: {Tally.of(part, equiv)}")
        for k in tally.unexplained:
            print(f"  survived: {k}   (mutmut show {k}, in {work.relative_to(ROOT)})")
        if args.check and target.bar is not None:
            if selected is not None:
                failed |= bool(tally.unexplained)
            else:
                # The bar holds per module, not only for the target as a whole: a well-tested
                # large module must not hide a weak small one.
                rates = [Tally.of(part, equiv).rate for part in modules.values()] or [1.0]
                failed |= min(rates) < target.bar
    return 1 if failed else 0


@dataclass(frozen=True)
class Tally:
    checked: int
    killed: int
    equivalent: int
    unexplained: list[str]

    @classmethod
    def of(cls, status: dict[str, str], equiv: dict[str, str]) -> Tally:
        checked = {k: s for k, s in status.items() if s not in ("not checked", "skipped")}
        survivors = sorted((k for k, s in checked.items() if s in ("survived", "no tests")),
                           key=_natural)
        unexplained = [k for k in survivors if k not in equiv]
        return cls(len(checked), len(checked) - len(survivors),
                   len(survivors) - len(unexplained), unexplained)

    @property
    def rate(self) -> float:
        counted = self.checked - self.equivalent
        return self.killed / counted if counted else 1.0

    def __str__(self) -> str:
        survived = self.checked - self.killed
        return (f"{self.checked} mutants, {self.killed} killed, {survived} survived "
                f"({self.equivalent} documented equivalent): "
                f"kill rate {self.rate:.1%} of non-equivalent")


def by_module(status: dict[str, str]) -> dict[str, dict[str, str]]:
    """Mutant statuses grouped by source file (``pep.auth.jws.x_f__mutmut_3`` -> pep/auth/jws.py)."""
    groups: dict[str, dict[str, str]] = {}
    for key, value in status.items():
        module = key.rsplit(".", 1)[0].replace(".", "/") + ".py"
        groups.setdefault(module, {})[key] = value
    return dict(sorted(groups.items()))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
