"""``regogate policy test | check | eval | schema`` through the registered CLI."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import orjson
import pytest

from pep.policy.cli import register
from tests.policy.conftest import POLICIES, write_bundle

HEAD = "package regogate\nimport rego.v1\n"
OK_DECISION = HEAD + 'decision := {"allow": true}\n'


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="regogate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    result = args.func(args)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return int(result)


def test_policy_test_passes_on_the_shipped_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("policy", "test", str(POLICIES), "--engine", "embedded") == 0
    out = capsys.readouterr().out
    assert "PASS:" in out and "FAIL" not in out


def test_policy_test_fails_on_a_broken_test(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(
        tmp_path / "b",
        {
            "p.rego": OK_DECISION,
            "p_test.rego": "package regogate_test\nimport rego.v1\nimport data.regogate\n"
            "test_ok if regogate.decision.allow\n"
            "test_broken if not regogate.decision.allow\n",
        },
    )
    assert run_cli("policy", "test", str(bundle), "--engine", "embedded") == 1
    out = capsys.readouterr().out
    assert "data.regogate_test.test_broken: FAIL" in out
    assert "PASS: 1/2" in out and "FAIL: 1/2" in out


def test_policy_test_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = write_bundle(
        tmp_path / "b",
        {
            "p.rego": OK_DECISION,
            "p_test.rego": "package regogate_test\nimport rego.v1\ntest_boom if { z := 0; 1 / z }\n",
        },
    )
    assert run_cli("policy", "test", str(bundle), "--engine", "embedded") == 1
    assert "test_boom: ERROR" in capsys.readouterr().out


def test_policy_test_with_no_tests_fails(tmp_path: Path) -> None:
    assert (
        run_cli(
            "policy",
            "test",
            str(write_bundle(tmp_path / "b", {"p.rego": OK_DECISION})),
            "--engine",
            "embedded",
        )
        == 1
    )


def test_policy_check_accepts_the_shipped_library() -> None:
    assert run_cli("policy", "check", str(POLICIES)) == 0


def test_policy_check_refuses_a_builtin_the_embedded_engine_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = HEAD + 'decision := {"allow": true} if strings.render_template("{{.a}}", {}) == ""\n'
    assert run_cli("policy", "check", str(write_bundle(tmp_path / "b", {"p.rego": body}))) == 1
    out = capsys.readouterr().out
    assert "p.rego:3: strings.render_template: a function that is neither" in out


def test_policy_check_refuses_network_calls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = (
        HEAD
        + 'decision := {"allow": http.send({"method": "get", "url": "http://x"}).status_code == 200}\n'
    )
    assert run_cli("policy", "check", str(write_bundle(tmp_path / "b", {"p.rego": body}))) == 1
    assert "http.send is refused" in capsys.readouterr().out


def test_policy_check_accepts_extensions_and_imported_functions(tmp_path: Path) -> None:
    bundle = write_bundle(
        tmp_path / "b",
        {
            "p.rego": HEAD + "import data.lib as l\n"
            'decision := {"allow": l.ok(crypto.sha256(input.x))}\n',
            "lib.rego": "package lib\nimport rego.v1\nok(h) if count(h) == 64\n",
        },
    )
    assert run_cli("policy", "check", str(bundle)) == 0


def test_policy_check_refuses_a_syntax_error(tmp_path: Path) -> None:
    assert (
        run_cli(
            "policy",
            "check",
            str(write_bundle(tmp_path / "b", {"p.rego": HEAD + "decision := {\n"})),
        )
        == 1
    )


def test_policy_check_refuses_a_bundle_without_the_decision(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli("policy", "check", str(write_bundle(tmp_path / "b", {"p.rego": HEAD + "x := 1\n"})))
        == 1
    )
    assert "data.regogate.decision" in capsys.readouterr().out


def test_policy_eval_prints_input_and_decision_for_a_dev_user(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = run_cli(
        "policy",
        "eval",
        "--user",
        "bob",
        "--model",
        "mock-gpt-admin",
        "--prompt",
        "hi",
        "--dir",
        str(POLICIES),
        "--json",
    )
    out = orjson.loads(capsys.readouterr().out)
    assert code == 1
    assert out["input"]["user"]["groups"] == ["contractors"]
    assert [r["code"] for r in out["decision"]["reasons"]] == ["model_not_allowed"]


def test_policy_eval_feeds_content_findings_to_policy(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(
        "policy",
        "eval",
        "--user",
        "x",
        "--groups",
        "ml-team",
        "--teams",
        "research",
        "--model",
        "mock-gpt",
        "--prompt",
        "write to alice@example.com",
        "--dir",
        str(POLICIES),
        "--json",
    )
    out = orjson.loads(capsys.readouterr().out)
    assert code == 0
    assert "email" in out["input"]["content"]["types"]
    assert out["decision"]["obligations"]["redact"] == ["email"]


def test_policy_schema_writes_both_schemas(tmp_path: Path) -> None:
    assert run_cli("policy", "schema", "--out", str(tmp_path)) == 0
    decision = orjson.loads((tmp_path / "decision.v1.schema.json").read_bytes())
    policy_input = orjson.loads((tmp_path / "policy-input.v1.schema.json").read_bytes())
    assert "allow" in decision["properties"]
    assert "user" in policy_input["properties"]


def test_committed_schemas_are_up_to_date() -> None:
    from pep.policy.schema import render

    docs = Path(__file__).resolve().parents[2] / "docs" / "schema"
    for name, body in render().items():
        assert (docs / name).read_bytes() == body, (
            f"docs/schema/{name} is stale: run regogate policy schema"
        )
