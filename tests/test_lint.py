"""The code base stays free of the errors pyflakes finds (unused imports, undefined names,
shadowing...), with the rule set in pyproject.toml [tool.ruff.lint], and type-checks under
``mypy --strict`` (pyproject.toml [tool.mypy]), tests included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_errors() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is not installed (it is in the [test] extras)")
    out = subprocess.run([ruff, "check", "--no-cache", "pep", "adapters", "idp", "tests",
                          "bench", "scripts"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_strict_finds_no_errors(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path),
                          "pep", "adapters", "idp", "tests"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
