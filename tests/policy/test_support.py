"""Bundle load refuses, with construct, file and line, what the embedded engine cannot run
exactly as OPA (pep.policy.support); everything else loads and agrees (test_conformance)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pep.policy.bundle import Bundle
from pep.policy.compiled import CompiledPolicy
from pep.policy.engine import PolicyError
from pep.policy.program import Program

HEAD = "package t\nimport rego.v1\n"

REFUSED = [
    ("walk_assignment", "x := [p | [p, v] := walk(input)]"),
    ("with_extension", 'h := crypto.sha256("a")\nx if h == "m" with crypto.sha256 as "m"'),
    ("with_builtin_by_builtin", "x if { count([1, 2]) == 3 with count as sum }"),
    ("float_trailing_zero", "x := 2.50"),
    ("number_range", "x := 123456789012345678901234567890"),
    ("ill_typed_call", 'x := object.get("str", "k", "d")'),
    ("time_format_zone_name", 'x := time.format([0, "UTC", "15:04 MST"])'),
    ("missing_builtin", 'x := strings.render_template("{{.a}}", {"a": 1})'),
    ("http.send is refused", 'x := http.send({"method": "GET", "url": "http://x"})'),
]


@pytest.mark.parametrize("key,rule", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_divergent_construct_is_refused_at_load_with_file_and_line(key: str, rule: str) -> None:
    with pytest.raises(PolicyError) as info:
        Program({"p.rego": HEAD + rule}, {})
    assert info.value.code == "policy_refused"
    assert "p.rego:3" in str(info.value) or "p.rego:4" in str(info.value)
    if key in {"walk_assignment"}:
        assert "walk(x, [path, value])" in str(info.value)


def test_an_import_ending_in_a_keyword_is_refused() -> None:
    modules = {"lib.rego": "package lib.contains\nimport rego.v1\nf := 1\n",
               "p.rego": HEAD + "import data.lib.contains\nx := contains.f\n"}
    with pytest.raises(PolicyError, match=r"p.rego:3: import data.lib.contains"):
        Program(modules, {})


def test_an_extension_in_relation_form_is_rewritten_to_assignment() -> None:
    program = Program({"p.rego": HEAD + "x := h if crypto.sha256(input.s, h)"}, {})
    assert program.evaluate("data.t.x", '{"s": "abc"}') == (
        True, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_a_line_longer_than_regorus_default_limit_loads() -> None:
    allowed = ", ".join(f'"m{i}"' for i in range(400))
    program = Program({"p.rego": HEAD + f"x if input.m in {{{allowed}}}"}, {})
    assert program.evaluate("data.t.x", '{"m": "m399"}') == (True, True)


def test_a_refused_bundle_does_not_compile_for_the_gateway() -> None:
    bundle = Bundle(root=Path("b"), modules={"p.rego": "package regogate\nimport rego.v1\n"
                                       'decision := {"allow": walk(input) == []}\n'
                                       "y := [p | [p, v] := walk(input)]\n"},
                    tests={}, data={}, revision="r1")
    with pytest.raises(PolicyError, match="p.rego:4"):
        CompiledPolicy(bundle, "regogate/decision")


def test_policy_test_runs_the_tests_as_the_gateway_decides(tmp_path: Path) -> None:
    from pep.policy.testing import run_embedded

    (tmp_path / "p.rego").write_text(HEAD + "default x := 0\nx := input.a / input.b\n")
    (tmp_path / "p_test.rego").write_text(
        "package t_test\nimport rego.v1\n"
        "test_decimal if 0.1 + 0.2 == 0.3\n"
        "test_default_on_error if data.t.x == 0 with input as {\"a\": 1, \"b\": 0}\n"
    )
    results = {r.name: r.outcome for r in run_embedded(tmp_path)}
    assert results == {"test_decimal": "PASS", "test_default_on_error": "PASS"}
