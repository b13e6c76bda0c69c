"""One fresh, minimal policy per divergence class found by running OPA's own conformance
suite (v1/test/cases/testdata/v1) against the embedded engine: each asserts OPA's result
(confirmed on the OPA oracle where it can run) or the refusal at load."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pep.policy.engine import PolicyError
from pep.policy.program import Program
from tests.opa_double import oracle, require_oracle


def _run(src: str, path: str = "data.t.p", policy_input: Any = None) -> tuple[bool, Any]:
    payload = None if policy_input is None else json.dumps(policy_input)
    return Program({"p.rego": src}, {}).evaluate(path, payload)


def _opa(src: str, path: str = "t.p", policy_input: Any = None) -> tuple[bool, Any]:
    require_oracle()  # skips on a laptop without it; fails in CI
    return oracle.Oracle({"p.rego": src}).evaluate(path, policy_input)


# Relation form `f(a, "lit", out)` of a Python builtin is rewritten to `out = f(a, "lit")`;
# regorus' span of a string literal leaves out its quotes, so the rewrite cut the closing
# quote off and the bundle failed to load.
RELATION_FORM = [
    ('package t\np := x if { indexof("ab", "b", x) }\n', 1),
    ('package t\np := x if { indexof("μx", "x", x) }\n', 1),
    ('package t\np := x if { regex.match(`^a`, "abc", x) }\n', True),
    ('package t\np := x if { s := "a-b"; regex.split("-", s, x) }\n', ["a", "b"]),
]


@pytest.mark.parametrize("src,want", RELATION_FORM)
def test_relation_form_with_a_string_literal_argument_loads_and_agrees(
    src: str, want: Any
) -> None:
    assert _run(src) == (True, want)
    assert _opa(src) == (True, want)


def test_json_is_valid_of_a_non_string_is_false_as_in_opa() -> None:
    src = "package t\np := x if { json.is_valid(input.v, x) }\n"
    for value, want in ((1, False), ("[1]", True), ("{", False), ("NaN", False)):
        assert _run(src, policy_input={"v": value}) == (True, want)
        assert _opa(src, policy_input={"v": value}) == (True, want)


@pytest.mark.parametrize("call", [
    'yaml.unmarshal("a: yes")', 'yaml.is_valid("a: 1\\n---\\nb: 2\\n")',
    'yaml.marshal({"a": "yes"})',
])
def test_yaml_builtins_are_refused(call: str) -> None:
    # OPA (Go, YAML 1.1) decodes `yes` as true and a multi-document string's first document;
    # marshals "yes" quoted. regorus does neither.
    with pytest.raises(PolicyError) as info:
        _run(f"package t\np := {call}\n")
    assert info.value.code == "policy_refused"
    assert "p.rego:2" in str(info.value) and "YAML" in str(info.value)


def test_a_number_literal_beyond_float64_is_refused_not_a_parse_error() -> None:
    with pytest.raises(PolicyError) as info:
        _run("package t\np := 1e400 > 1\n")
    assert info.value.code == "policy_refused"
    assert "p.rego:2" in str(info.value) and "2^64" in str(info.value)


# `with count as ...` must replace count(<string>) too, which support.py otherwise routes
# to an exact Python count that `with` cannot reach.
WITH_COUNT = "package t\np if {\n  v := 3\n  q with count as v\n}\nq if count(\"foo\") == 3\n"


def test_with_count_replaces_count_of_a_string_literal() -> None:
    assert _run(WITH_COUNT) == (True, True)
    assert _opa(WITH_COUNT) == (True, True)


def test_with_count_and_count_of_input_is_refused() -> None:
    src = "package t\nf(_) := 1\np if { q with count as f }\nq if count(input.s) == 1\n"
    with pytest.raises(PolicyError) as info:
        _run(src)
    assert info.value.code == "policy_refused"
    assert "p.rego:4" in str(info.value) and "UTF-16" in str(info.value)


def test_json_is_valid_of_a_constant_non_string_is_still_refused_as_ill_typed() -> None:
    # OPA's type checker rejects `json.is_valid(1)`; at run time a non-string is false.
    with pytest.raises(PolicyError) as info:
        _run("package t\np := json.is_valid(1)\n")
    assert info.value.code == "policy_refused" and "json.is_valid" in str(info.value)


def test_an_integer_literal_below_int64_is_refused() -> None:
    # regorus holds it as a float (-9.223372036854776e+18); OPA keeps it exact.
    with pytest.raises(PolicyError) as info:
        _run("package t\np := -9223372036854775809\n")
    assert info.value.code == "policy_refused" and "-2^63" in str(info.value)
    assert _run("package t\np := -9223372036854775808\n") == (True, -9223372036854775808)


# `import rego.v2` (or `rego.v0`, or an unknown future keyword) is a parse error in OPA 1.x;
# regorus ignored the import and loaded the policy.
@pytest.mark.parametrize("imp", ["rego.v2", "rego.v0", "future.keywords.bogus"])
def test_unknown_dialect_import_refused(imp: str) -> None:
    src = f"package t\n\nimport {imp}\n\np := 1\n"
    with pytest.raises(PolicyError) as err:
        _run(src)
    assert err.value.code == "policy_refused"
    assert f"import {imp}" in str(err.value)
    require_oracle()
    with pytest.raises(oracle.OracleError):
        oracle.Oracle({"p.rego": src}).evaluate("t.p")


@pytest.mark.parametrize("imp", ["rego.v1", "future.keywords.if", "future.keywords.not"])
def test_known_imports_still_load(imp: str) -> None:
    src = f"package t\n\nimport {imp}\n\np := 1\n"
    assert _run(src) == (True, 1)
