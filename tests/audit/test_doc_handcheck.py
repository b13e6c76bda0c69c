"""The hand check printed in docs/audit.md (plain hashlib + cryptography) accepts a real
export and rejects one with alice's newest record left out."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .test_cli import run, trail  # noqa: F401 - the fixture

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def script(tmp: Path) -> Path:
    text = DOC.read_text()
    block = re.search(r"<!-- handcheck:start -->\n```python\n(.*?)```\n<!-- handcheck:end -->", text, re.S)
    assert block is not None, "docs/audit.md lost its hand-check block"
    path = tmp / "handcheck.py"
    path.write_text(block.group(1))
    return path


def test_the_documented_hand_check_verifies_an_export(trail: Path, tmp_path: Path) -> None:  # noqa: F811
    bundle = tmp_path / "alice.json"
    assert run(["audit", "export", "--store", f"sqlite:///{trail / 'audit.db'}", "--user", "alice",
                "--proof", "-o", str(bundle)]) == 0
    key = trail / "audit-signing-key.pub.pem"
    check = script(tmp_path)
    ok = subprocess.run([sys.executable, str(check), str(bundle), str(key)],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.strip() == "bundle OK", ok.stderr
    doc = json.loads(bundle.read_text())
    doc["subjects"][0]["records"].pop()
    bundle.write_text(json.dumps(doc))
    bad = subprocess.run([sys.executable, str(check), str(bundle), str(key)],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "newest records left out" in bad.stderr
