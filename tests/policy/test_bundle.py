"""Bundle loading: OPA data-file convention, tests kept apart, revision = content hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pep.policy import bundle
from tests.policy.conftest import write_bundle

MOD = 'package regogate\nimport rego.v1\ndecision := {"allow": true}\n'


def test_nested_data_file_is_mounted_at_its_directory_path(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"p.rego": MOD, "x/y/data.yaml": "k: 1\n"})
    assert bundle.load(root).data == {"x": {"y": {"k": 1}}}


def test_root_data_files_merge(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"p.rego": MOD, "data.yaml": "a: 1\n"}, {"b": 2})
    assert bundle.load(root).data == {"a": 1, "b": 2}


def test_conflicting_data_files_are_refused(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"p.rego": MOD, "data.yaml": "a: 1\n"}, {"a": 2})
    with pytest.raises(bundle.BundleError, match="data.a"):
        bundle.load(root)


def test_invalid_data_file_is_refused(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"p.rego": MOD, "data.json": "{nope"})
    with pytest.raises(bundle.BundleError, match="data.json"):
        bundle.load(root)


def test_tests_are_not_served(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"p.rego": MOD, "p_test.rego": "package t\n"})
    loaded = bundle.load(root)
    assert list(loaded.modules) == ["p.rego"] and list(loaded.tests) == ["p_test.rego"]


def test_revision_changes_with_content_but_not_with_tests(tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", {"p.rego": MOD, "p_test.rego": "package t\n"})
    first = bundle.load(root).revision
    (root / "p_test.rego").write_text("package t\nimport rego.v1\n")
    assert bundle.load(root).revision == first
    (root / "p.rego").write_text(MOD + "# edited\n")
    assert bundle.load(root).revision != first


def test_hidden_files_are_ignored(tmp_path: Path) -> None:
    root = write_bundle(
        tmp_path / "b", {"p.rego": MOD, ".git/x.rego": "garbage", ".#p.rego": "garbage"}
    )
    assert list(bundle.load(root).modules) == ["p.rego"]


def test_bundle_without_modules_is_refused(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleError):
        bundle.load(write_bundle(tmp_path / "b", {}, {"a": 1}))


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(bundle.BundleError):
        bundle.load(tmp_path / "nope")
