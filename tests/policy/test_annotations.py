"""``regogate policy check`` refuses exactly the ``# METADATA`` blocks OPA refuses: each sample
is judged by OPA's own parser (the oracle) and by pep.policy.annotations, and they must agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from pep.policy import bundle as bundle_mod
from pep.policy.annotations import metadata_errors
from pep.policy.check import check
from tests.opa_double import oracle, require_oracle
from tests.policy.conftest import POLICIES, write_bundle

SAMPLES = {
    "valid": "# METADATA\n# title: t\n# description: one line\nx := 1\n",
    "folded": "# METADATA\n# description: >-\n#   long text: with colons\n#   over lines\nx := 1\n",
    "prose after a blank line": "# METADATA\n# description: d\n#\n# Prose: with a colon: here\nx := 1\n",
    "plain prose line": "# METADATA\n# description: d\n#\n# Two phases share this entry point.\nx := 1\n",
    "not a mapping": "# METADATA\n# - a\n# - b\nx := 1\n",
    "bad indentation": "# METADATA\n# description: d\n#  title: t\nx := 1\n",
    "prose before the block": "# Prose: with a colon: here\n\n# METADATA\n# description: d\nx := 1\n",
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_metadata_check_agrees_with_opa(name: str) -> None:
    require_oracle()
    src = "package p\n\n" + SAMPLES[name]
    opa_refuses = bool(oracle.annotation_errors({"p.rego": src}))
    ours = metadata_errors("p.rego", src)
    assert bool(ours) == opa_refuses, (name, ours)
    if ours:
        assert ours[0].startswith("p.rego:3:")


def test_shipped_policies_have_valid_metadata() -> None:
    loaded = bundle_mod.load(POLICIES)
    for rel, src in {**loaded.modules, **loaded.tests}.items():
        assert metadata_errors(rel, src) == []


def test_policy_check_refuses_a_bundle_opa_would_not_load(tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {
        "p.rego": "package regogate\n\n# METADATA\n# description: d\n#\n# Note: more: text\n"
                  'decision := {"allow": true}\n',
    })
    report = check(bundle)
    assert not report.ok
    assert any("p.rego:3: METADATA block is not valid YAML" in e for e in report.errors)
