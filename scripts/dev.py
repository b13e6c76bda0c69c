#!/usr/bin/env python3
"""Set up and run regogate with nothing but Python 3.11+.

    python3 scripts/dev.py run     # venv + install, then `regogate serve` on embedded defaults
    python3 scripts/dev.py test    # venv + install with test extras, then the whole test suite
    python3 scripts/dev.py mutate  # mutation testing of the security core (scripts/mutate.py)

Extra arguments are passed on (`run --port 9000`, `test -k audit`). The virtual environment
lives in .venv; it is reinstalled only when pyproject.toml or constraints.txt changes. Both
commands install with ``-c constraints.txt`` (exact versions; scripts/constraints.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
CONSTRAINTS = ROOT / "constraints.txt"


def say(msg: str) -> None:
    print(f"[regogate] {msg}", flush=True)


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"regogate needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        say(f"creating virtual environment in {VENV}")
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    stamp_file = VENV / f".regogate-installed-{extras or 'base'}"
    stamp = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()
                           + CONSTRAINTS.read_bytes()).hexdigest()
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    say("installing regogate and its dependencies (first run takes a minute)")
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.check_call([*pip, "--upgrade", "pip"])
    target = f".[{extras}]" if extras else "."
    # Exact versions the suite last passed with (scripts/constraints.py writes the file).
    subprocess.check_call([*pip, "-c", str(CONSTRAINTS), "-e", target], cwd=ROOT)
    stamp_file.write_text(stamp)


# Real OPA (its Go engine as a shared library) for the test suite's OPA path and the parity
# tests (tests/opa_double/oracle.py). Not a pyproject extra: its metadata asks for Python
# 3.14 while the wheel only needs glibc 2.34, so pip must be told --ignore-requires-python,
# which an extra cannot say. Exact pin, like the embedded engine: upgrade with the suite green.
OPA_ORACLE = "opa-golib-python-bindings==0.4.4"


def ensure_opa_oracle() -> None:
    stamp_file = VENV / ".regogate-opa-oracle"
    if stamp_file.exists() and stamp_file.read_text() == OPA_ORACLE:
        return
    say(f"installing the OPA test oracle ({OPA_ORACLE}, --ignore-requires-python)")
    pip = [str(PY), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    code = subprocess.call([*pip, "--ignore-requires-python", "--no-deps", OPA_ORACLE])
    if code != 0:
        say("could not install the OPA oracle: the OPA-path tests will skip (fail in CI)")
        return
    stamp_file.write_text(OPA_ORACLE)


def ensure_interop_provider() -> None:
    """The independent OIDC provider used by the identity interop test (npm package)."""
    interop = ROOT / "tests" / "auth" / "interop"
    if not (interop / "package.json").exists() or (interop / "node_modules").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        say("npm not found: the OIDC interop test will be skipped (required in CI)")
        return
    say("installing the independent OIDC provider for the interop test (npm ci)")
    subprocess.call([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=interop)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "test", "mutate"):
        print(__doc__)
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    os.chdir(ROOT)
    if command == "run":
        ensure_venv("")
        return subprocess.call([str(BIN / "regogate"), "serve", *rest])
    ensure_venv("test")
    ensure_opa_oracle()
    if command == "mutate":
        return subprocess.call([str(PY), str(ROOT / "scripts" / "mutate.py"), *rest])
    ensure_interop_provider()
    # Coverage of pep, adapters and idp (subprocesses included: pyproject [tool.coverage]),
    # reported at the end; then the security core's per-file floor (scripts/coverage_floor.py).
    cov = [] if "--no-cov" in rest else ["--cov", "--cov-report=term-missing:skip-covered"]
    for stale in ROOT.glob(".coverage*"):
        stale.unlink()
    result = subprocess.call([str(PY), "-m", "pytest", *cov, *rest])
    if result == 0 and cov and not _selected(rest):
        result = subprocess.call([str(PY), str(ROOT / "scripts" / "coverage_floor.py")])
    return result


def _selected(args: list[str]) -> bool:
    """True when the run is a subset (-k, -m, paths, ...): the floor applies to the whole suite."""
    return any(a in ("-k", "-m", "--lf", "--deselect") or a.startswith(("tests", "-k", "-m"))
               for a in args)


if __name__ == "__main__":
    raise SystemExit(main())
