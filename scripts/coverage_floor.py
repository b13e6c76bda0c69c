#!/usr/bin/env python3
"""Fail when a file of the security core is under its coverage floor (run by dev.py test
after the suite, on the .coverage data the run wrote).

The security core is what decides who may do what and what the audit proves; a line there
that no test runs is a line whose regression nobody would see.
"""

from __future__ import annotations

from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent
FLOOR = 95.0
CORE = ("pep/auth/*.py", "pep/audit/verify.py", "pep/audit/checkpoints.py", "pep/obligations.py",
        "pep/policy/contract.py", "pep/policy/engine.py", "pep/content/*.py", "pep/request.py",
        "pep/mcp/resource.py", "pep/mcp/credentials.py", "pep/validation.py",
        "pep/workspace/oidc.py")


def main() -> int:
    cov = coverage.Coverage(data_file=str(ROOT / ".coverage"), config_file=str(ROOT / "pyproject.toml"))
    cov.load()
    data = cov.get_data()
    measured = {str(Path(f).resolve().relative_to(ROOT)): f for f in data.measured_files()
                if Path(f).resolve().is_relative_to(ROOT)}
    low: list[tuple[str, float]] = []
    for pattern in CORE:
        for path in sorted(ROOT.glob(pattern)):
            rel = str(path.relative_to(ROOT))
            _, statements, _, missing, _ = cov.analysis2(str(path))
            if not statements:
                continue
            pct = 100.0 * (len(statements) - len(missing)) / len(statements)
            if rel not in measured or pct < FLOOR:
                low.append((rel, pct))
    for rel, pct in low:
        print(f"coverage floor: {rel} is at {pct:.1f}% (security core floor {FLOOR:.0f}%)")
    if not low:
        print(f"coverage floor: every security-core file is at {FLOOR:.0f}% or more")
    return 1 if low else 0


if __name__ == "__main__":
    raise SystemExit(main())
