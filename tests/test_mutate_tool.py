"""scripts/mutate.py's bookkeeping: the kill rate per module, the equivalents read from
docs/testing.md, and that every documented equivalent names a mutant of a real target module.

The tool itself runs mutmut (minutes); what is tested here is the arithmetic and the
parsing that decide whether CI's ``--check`` passes."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mutate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutate_tool", REPO / "scripts" / "mutate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutate_tool"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_tally_sets_documented_equivalents_aside(mutate: ModuleType) -> None:
    status = {
        "pep.auth.jws.x_a__mutmut_1": "killed",
        "pep.auth.jws.x_a__mutmut_2": "killed",
        "pep.auth.jws.x_a__mutmut_3": "timeout",
        "pep.auth.jws.x_a__mutmut_4": "survived",
        "pep.auth.jws.x_a__mutmut_5": "survived",
        "pep.auth.jws.x_a__mutmut_6": "not checked",
        "pep.auth.jws.x_a__mutmut_7": "no tests",
    }
    equiv = {"pep.auth.jws.x_a__mutmut_5": "why"}
    tally = mutate.Tally.of(status, equiv)
    # 6 checked (the unchecked one is left out), 2 killed + 1 timeout, 3 survivors of which 1
    # is equivalent: 3 killed of 5 that count.
    assert (tally.checked, tally.killed, tally.equivalent) == (6, 3, 1)
    assert tally.unexplained == ["pep.auth.jws.x_a__mutmut_4", "pep.auth.jws.x_a__mutmut_7"]
    assert tally.rate == pytest.approx(3 / 5)
    assert str(tally) == ("6 mutants, 3 killed, 3 survived (1 documented equivalent): "
                          "kill rate 60.0% of non-equivalent")


def test_tally_of_nothing_checked_is_not_a_failure(mutate: ModuleType) -> None:
    tally = mutate.Tally.of({"pep.x.x_f__mutmut_1": "not checked"}, {})
    assert tally.checked == 0 and tally.rate == 1.0


def test_tally_all_survivors_equivalent_is_full_rate(mutate: ModuleType) -> None:
    tally = mutate.Tally.of({"pep.x.x_f__mutmut_1": "survived"}, {"pep.x.x_f__mutmut_1": "r"})
    assert tally.rate == 1.0 and tally.unexplained == []


def test_by_module_groups_by_source_file(mutate: ModuleType) -> None:
    status = {
        "pep.auth.verify.xǁJwtVerifierǁ_key_for__mutmut_37": "killed",
        "pep.auth.jws.x_b64url_decode__mutmut_1": "survived",
        "pep.auth.jws.x_parse_compact__mutmut_2": "killed",
    }
    groups = mutate.by_module(status)
    assert list(groups) == ["pep/auth/jws.py", "pep/auth/verify.py"]
    assert set(groups["pep/auth/jws.py"]) == {"pep.auth.jws.x_b64url_decode__mutmut_1",
                                              "pep.auth.jws.x_parse_compact__mutmut_2"}


def test_natural_order_sorts_mutant_numbers_numerically(mutate: ModuleType) -> None:
    names = ["pep.a.x_f__mutmut_10", "pep.a.x_f__mutmut_9", "pep.a.x_f__mutmut_100"]
    assert sorted(names, key=mutate._natural) == [
        "pep.a.x_f__mutmut_9", "pep.a.x_f__mutmut_10", "pep.a.x_f__mutmut_100"]


def test_documented_equivalents_are_read_with_their_reasons(mutate: ModuleType) -> None:
    equiv = mutate.equivalents()
    assert len(equiv) > 50
    assert all(reason.strip() for reason in equiv.values())
    # The known-gaps table is not an equivalents table: nothing listed there is set aside.
    text = (REPO / "docs" / "testing.md").read_text(encoding="utf-8")
    gaps = text.split("### Survivors that are not equivalent", 1)
    if len(gaps) == 2:
        for name in re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", gaps[1].split("\n### ", 1)[0]):
            assert name not in equiv, name


def test_every_equivalent_names_a_module_of_a_target(mutate: ModuleType) -> None:
    """A row for a module no target mutates (a typo, a moved file) would never be checked."""
    targeted = {path.relative_to(REPO).as_posix()
                for target in mutate.TARGETS.values()
                for pattern in target.modules
                for path in REPO.glob(pattern)}
    for name in mutate.equivalents():
        module = name.rsplit(".", 1)[0].replace(".", "/") + ".py"
        assert module in targeted, f"{name}: {module} is not mutated by any target"
