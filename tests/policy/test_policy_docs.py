"""docs/policies.md lists exactly what the embedded engine supports and refuses: the section
is generated from pep.policy.support, the tables bundle load refuses from."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pep.policy import support

REPO = Path(__file__).resolve().parents[2]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("gen", REPO / "scripts" / "gen_policy_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_support_section_of_policies_md_is_current() -> None:
    gen = _script()
    current = gen.DOC.read_text()
    assert gen.rendered(current) == current, "run scripts/gen_policy_docs.py"


def test_every_refused_construct_and_builtin_is_in_the_page() -> None:
    page = (REPO / "docs" / "policies.md").read_text()
    for key in support.REFUSED_CONSTRUCTS:
        assert f"**{key}**" in page
    for name, status, _ in support.support_table():
        assert f"| `{name}` | {status} |" in page
