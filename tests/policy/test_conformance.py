"""The embedded engine decides exactly as real OPA on the conformance corpus, or refuses.

The corpus (tests/policy/conformance/{cases,extended}.json, expectations from OPA v1.9.0; see
its README) is a copy of ../shared/rego-conformance/, refreshed with
``scripts/refresh_conformance.py``. A case passes when the embedded engine, run as the
gateway runs it (``pep.policy.program.Program``), gives OPA's result, or when the policy is
refused at load with a message naming the construct. A different value never passes.
Cases run in worker processes, so a Rust panic is a counted failure, not a crashed suite.
"""

from __future__ import annotations

import importlib.util
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.policy.conformance.runner import agrees, run_case

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "policy" / "conformance"
FILES = ("cases.json", "extended.json")


def _load(name: str) -> list[dict[str, Any]]:
    return list(orjson.loads((CORPUS / name).read_bytes()))


def _refresh_script() -> Any:
    spec = importlib.util.spec_from_file_location("refresh", REPO / "scripts" / "refresh_conformance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [c for name in FILES for c in _load(name)]


@pytest.fixture(scope="module")
def outcomes() -> dict[str, tuple[str, Any]]:
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run_case, CASES, chunksize=16))
    return {c["id"]: r for c, r in zip(CASES, results, strict=True)}


def test_the_corpus_is_in_the_repo_with_both_files() -> None:
    assert len(_load("cases.json")) == 45
    assert len(_load("extended.json")) == 291
    assert len({c["id"] for c in CASES}) == len(CASES)


def test_the_copy_matches_the_shared_corpus() -> None:
    refresh = _refresh_script()
    source = refresh.default_source()
    if not (source / "cases.json").is_file():
        pytest.skip(f"no shared corpus at {source}: nothing to compare the copy with")
    assert refresh.stale(source) == [], "run scripts/refresh_conformance.py"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_embedded_engine_agrees_with_opa_or_refuses(
    case: dict[str, Any], outcomes: dict[str, tuple[str, Any]]
) -> None:
    kind, value = outcomes[case["id"]]
    assert agrees(case, kind, value), (
        f"{case['id']} ({case['category']}): embedded gave {kind} {value!r}, "
        f"OPA gave {case['opa_result']}"
    )


def test_refusals_name_construct_file_and_line(outcomes: dict[str, tuple[str, Any]]) -> None:
    refused = {i: v for i, (k, v) in outcomes.items() if k == "refused"}
    for case_id, message in refused.items():
        assert ".rego:" in message, f"{case_id}: refusal without file:line: {message}"


def test_no_case_panics(outcomes: dict[str, tuple[str, Any]]) -> None:
    assert [i for i, (k, _) in outcomes.items() if k == "panic"] == []
