#!/usr/bin/env python3
"""Refresh the repo's copy of the Rego conformance corpus from ../shared/rego-conformance/.

    python3 scripts/refresh_conformance.py [--source DIR] [--check]

The corpus (expectations recorded from real OPA v1.9.0) lives in tests/policy/conformance/
so the conformance tests run on a fresh clone; ``--check`` only reports whether the copy is
current (exit 1 if not). tests/policy/test_conformance.py runs the same comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEST = REPO / "tests" / "policy" / "conformance"
FILES = ("cases.json", "extended.json", "README.md")


def default_source() -> Path:
    """``$REGOGATE_CONFORMANCE``, else the nearest ``../shared/rego-conformance`` above the
    repo (a git worktree sits one level deeper than the main checkout)."""
    env = os.environ.get("REGOGATE_CONFORMANCE")
    if env:
        return Path(env)
    for parent in REPO.parents:
        candidate = parent / "shared" / "rego-conformance"
        if (candidate / "cases.json").is_file():
            return candidate
    return REPO.parent / "shared" / "rego-conformance"


def stale(source: Path) -> list[str]:
    """Files whose copy differs from (or is missing next to) the source."""
    return [
        name for name in FILES
        if (source / name).is_file()
        and (not (DEST / name).is_file() or (source / name).read_bytes() != (DEST / name).read_bytes())
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=default_source())
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if not (args.source / "cases.json").is_file():
        print(f"no corpus at {args.source}", file=sys.stderr)
        return 2
    changed = stale(args.source)
    if args.check:
        for name in changed:
            print(f"{DEST / name} is out of date with {args.source / name}")
        return 1 if changed else 0
    DEST.mkdir(parents=True, exist_ok=True)
    for name in changed:
        shutil.copyfile(args.source / name, DEST / name)
        print(f"updated {DEST / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
