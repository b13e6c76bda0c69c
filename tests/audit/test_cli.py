"""`regogate audit verify|query|export|report` against a real trail on disk."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest

from pep.audit.cli import register
from pep.audit.factory import open_store

from .helpers import make_event, settings


def run(argv: list[str]) -> int:
    import argparse
    import asyncio

    parser = argparse.ArgumentParser(prog="regogate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(asyncio.run(args.func(args)))


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    import asyncio

    async def build() -> None:
        store = open_store(settings(tmp_path, checkpoint_dir=tmp_path / "cp"), tmp_path)
        await store.start()
        await store.append(make_event("alice", 1, tokens=(10, 5), day=1))
        await store.append(make_event("alice", 2, kind="request.completion", tokens=(10, 5), day=1))
        await store.append(make_event("bob", 3, kind="policy.deny", allow=False,
                                      model="mock-gpt-admin", day=2))
        await store.append(make_event("carol", 4, kind="request.completion", model="mock-gpt-admin",
                                      tokens=(7, 3), day=2))
        await store.append(make_event(None, 5, kind="auth.failure", day=2))
        await store.close()

    asyncio.run(build())
    return tmp_path


def store_arg(tmp: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp / 'audit.db'}"]


def test_query_by_user_prints_only_that_users_records_as_json_lines(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "query", *store_arg(trail), "--user", "alice"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["request_id"] for d in lines] == ["req_alice_1", "req_alice_2"]
    assert all(d["decision_id"].startswith("dec_alice") and "chain" in d for d in lines)


def test_query_filters_by_decision_team_and_model(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(["audit", "query", *store_arg(trail), "--decision", "deny"])
    assert [json.loads(x)["who"]["subject"] for x in capsys.readouterr().out.splitlines()] == ["bob"]
    run(["audit", "query", *store_arg(trail), "--team", "platform"])
    assert [json.loads(x)["who"]["subject"] for x in capsys.readouterr().out.splitlines()] == ["carol"]
    run(["audit", "query", *store_arg(trail), "--model", "mock-gpt-admin", "--format", "table"])
    out = capsys.readouterr().out
    assert "bob" in out and "carol" in out and "alice" not in out


def test_query_uses_the_embedded_default_data_dir(
    trail: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGOGATE_DATA_DIR", str(trail))
    assert run(["audit", "query", "--request-id", "req_bob_3"]) == 0
    assert json.loads(capsys.readouterr().out)["event"] == "policy.deny"


def test_query_reads_the_store_named_in_a_config_file(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = trail / "gateway.yaml"
    cfg.write_text(
        "identity:\n  issuers:\n    - issuer: http://127.0.0.1:9/dev\n      audiences: [regogate]\n"
        f"audit:\n  store: sqlite:///{trail / 'audit.db'}\n"
        f"server:\n  data_dir: {trail}\n"
    )
    assert run(["audit", "verify", "--config", str(cfg)]) == 0
    assert "VALID" in capsys.readouterr().out


def test_invalid_filter_is_a_usage_error(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "query", *store_arg(trail), "--since", "yesterday-ish"]) == 2
    assert "since" in capsys.readouterr().err


def test_verify_exits_zero_and_reports_json_for_a_clean_trail(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(["audit", "verify", *store_arg(trail), "--public-key",
                str(trail / "audit-signing-key.pub.pem"), "--checkpoints", str(trail / "cp"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["valid"] and report["records"] == 5 and report["error"] is None


def test_verify_exits_one_and_names_the_broken_record(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(trail / "audit.db") as conn:
        conn.execute("UPDATE audit_records SET body = replace(body, 'mock-gpt-admin', 'mock-gpt') WHERE seq = 3")
    code = run(["audit", "verify", *store_arg(trail), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["error"]["kind"] == "modified" and report["error"]["seq"] == 3
    assert report["error"]["subject"] == "bob"


def test_verify_with_a_wrong_public_key_fails(trail: Path, tmp_path_factory: pytest.TempPathFactory,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from pep.audit.checkpoints import ensure_default_key

    other = tmp_path_factory.mktemp("other")
    ensure_default_key(other)
    code = run(["audit", "verify", *store_arg(trail), "--public-key",
                str(other / "audit-signing-key.pub.pem")])
    assert code == 1
    assert "INVALID: checkpoint" in capsys.readouterr().out


def test_verify_since_checks_only_the_later_part(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "verify", *store_arg(trail), "--since", "2025-01-02", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["first_seq"] == 3 and report["records"] == 3


def test_export_csv_has_a_header_and_one_row_per_record(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert run(["audit", "export", *store_arg(trail), "--format", "csv", "-o", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 5
    assert rows[2]["subject"] == "bob" and rows[2]["reasons"] == "model_not_allowed"


def test_export_ocsf_is_api_activity_shaped(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["audit", "export", *store_arg(trail), "--format", "ocsf", "--user", "bob"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert (ev["class_uid"], ev["category_uid"], ev["type_uid"]) == (6003, 6, 600301)
    assert ev["actor"]["user"]["uid"] == "bob"
    assert ev["actor"]["authorizations"][0]["decision"] == "deny"
    assert ev["status"] == "Failure" and ev["api"]["request"]["uid"] == "req_bob_3"
    assert isinstance(ev["time"], int) and len(ev["metadata"]["uid"]) == 64


def test_report_counts_requests_denies_by_reason_tokens_and_cost_per_day(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["audit", "report", *store_arg(trail), "--by", "model", "--format", "json"]) == 0
    rows = {(r["model"], r["day"]): r for r in json.loads(capsys.readouterr().out)}
    admin = rows[("mock-gpt-admin", "2025-01-02")]
    assert admin["requests"] == 2 and admin["denied"] == 1 and admin["allowed"] == 1
    assert admin["denies_by_reason"] == {"model_not_allowed": 1}
    assert (admin["tokens_in"], admin["tokens_out"]) == (7, 3)
    # alice: intent + completion is ONE request
    assert rows[("mock-gpt", "2025-01-01")]["requests"] == 1
