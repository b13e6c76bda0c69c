"""Attacks by someone who can write the audit database but not the signing key, on SQLite and
on the real PostgreSQL, each checked through ``regogate audit verify`` (exit 1, the first broken
link named) and, for per-user exports, offline against the bundle alone."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pep.audit.checkpoints import Checkpoint
from pep.audit.factory import open_store
from pep.audit.records import ALL_COLUMNS, StoredRecord, index_fields, record_hash
from pep.audit.settings import AuditSettings
from pep.audit.timefmt import format_rfc3339
from pep.audit.witness import default_witness_dir

from .helpers import make_event
from .test_cli import run

USERS = ["alice", "bob", "alice", "carol", "alice", "bob", "alice", "bob", "carol", "alice", "bob", "alice"]


@dataclass
class Trail:
    kind: str
    tmp: Path
    store_args: list[str]
    execute: Callable[[str], list[Any]]

    @property
    def witness(self) -> Path:
        return default_witness_dir(self.tmp)

    @property
    def key(self) -> Path:
        return self.tmp / "audit-signing-key.pub.pem"

    def t(self, name: str) -> str:
        return name if self.kind == "sqlite" else f'"{self.store_args[3]}".{name}'

    def record(self, seq: int) -> StoredRecord:
        rows = self.execute(f"SELECT {', '.join(ALL_COLUMNS)} FROM {self.t('audit_records')} WHERE seq = {seq}")
        return StoredRecord.from_row(rows[0])

    def put(self, rec: StoredRecord) -> None:
        vals = ", ".join(_lit(v) for v in rec.row())
        self.execute(f"INSERT INTO {self.t('audit_records')} ({', '.join(ALL_COLUMNS)}) VALUES ({vals})")

    def checkpoint_ids(self, kind: str | None = None) -> list[int]:
        where = f"WHERE kind = '{kind}'" if kind else ""
        return [int(r[0]) for r in self.execute(
            f"SELECT id FROM {self.t('audit_checkpoints')} {where} ORDER BY id")]


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, int | float):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def _settings(kind: str, tmp: Path, schema: str, dsn: str | None, **kw: Any) -> AuditSettings:
    base: dict[str, Any] = {"checkpoint_every_s": 3600.0, "checkpoint_every_records": 4}
    if kind == "sqlite":
        base["store"] = f"sqlite:///{tmp / 'audit.db'}"
    else:
        base.update(store=dsn, pg_schema=schema)
    base.update(kw)
    return AuditSettings(**base)


async def _build(settings: AuditSettings, tmp: Path, events: int = len(USERS)) -> None:
    store = open_store(settings, tmp)
    await store.start()
    for n, user in enumerate(USERS[:events]):
        await store.append(make_event(user, n, kind="request.completion"))
    await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def trail_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Trail]]:
    kind = request.param
    dsn = request.getfixturevalue("postgres_dsn") if kind == "postgres" else None
    schema = f"audit_i_{uuid.uuid4().hex[:10]}"

    def execute(sql: str) -> list[Any]:
        if kind == "sqlite":
            with sqlite3.connect(tmp_path / "audit.db", isolation_level=None) as conn:
                return conn.execute(sql).fetchall()
        import asyncpg

        async def go() -> list[Any]:
            conn = await asyncpg.connect(dsn)
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def make(**kw: Any) -> Trail:
        asyncio.run(_build(_settings(kind, tmp_path, schema, dsn, **kw), tmp_path))
        args = (["--store", f"sqlite:///{tmp_path / 'audit.db'}"] if kind == "sqlite"
                else ["--store", str(dsn), "--pg-schema", schema])
        return Trail(kind, tmp_path, args, execute)

    yield make
    if kind == "postgres":
        execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def verify(trail: Trail, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = run(["audit", "verify", *trail.store_args, "--public-key", str(trail.key),
                "--checkpoints", str(trail.witness), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def broken(report: dict[str, Any]) -> tuple[str, str, int | None]:
    e = report["error"]
    return e["kind"], e["chain"], e["seq"]


def test_untouched_trail_verifies_with_its_default_witness(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    code, report = verify(trail, capsys)
    assert code == 0, report
    assert report["unsealed_records"] == 0 and report["checkpoints_verified"] >= 5
    assert list(trail.witness.glob("checkpoint-*.json")), "no checkpoint reached the witness"


def test_deleted_middle_checkpoint_row_breaks_the_checkpoint_chain(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    ids = trail.checkpoint_ids()
    trail.execute(f"DELETE FROM {trail.t('audit_checkpoints')} WHERE id = {ids[2]}")
    # Database alone: the next checkpoint links to one that is gone.
    capsys.readouterr()
    code = run(["audit", "verify", *trail.store_args, "--public-key", str(trail.key),
                "--checkpoints", str(trail.tmp / "no-witness.jsonl"), "--json"])
    assert code == 2  # a named witness that does not exist is a usage error
    capsys.readouterr()
    empty = trail.tmp / "empty-witness"
    empty.mkdir()
    code = run(["audit", "verify", *trail.store_args, "--public-key", str(trail.key),
                "--checkpoints", str(empty), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert broken(report)[:2] == ("deleted", "checkpoint")
    assert "checkpoint chain broken" in report["error"]["message"]
    # With the witness the copy is there, and its absence from the database is named.
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report)[:2] == ("deleted", "checkpoint")
    assert "deleted from the database" in report["error"]["message"]


def test_deleted_heartbeat_row_is_detected(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trail = trail_factory(checkpoint_every_s=0.05, seal_idle_s=0.01)
    # A second run that idles long enough to write heartbeats.
    settings = _settings(trail.kind, tmp_path, trail.store_args[3] if trail.kind == "postgres" else "",
                         trail.store_args[1] if trail.kind == "postgres" else None,
                         checkpoint_every_s=0.05)

    async def idle_run() -> None:
        store = open_store(settings, tmp_path)
        await store.start()
        for _ in range(200):  # until three heartbeats exist (a loaded machine is slower)
            await asyncio.sleep(0.05)
            if len(await asyncio.to_thread(trail.checkpoint_ids, "heartbeat")) >= 3:
                break
        await store.close()

    asyncio.run(idle_run())
    beats = trail.checkpoint_ids("heartbeat")
    assert len(beats) >= 3
    code, _ = verify(trail, capsys)
    assert code == 0
    trail.execute(f"DELETE FROM {trail.t('audit_checkpoints')} WHERE id = {beats[1]}")
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report)[:2] == ("deleted", "checkpoint")


def test_deleting_checkpoints_and_records_in_the_database_is_caught_by_the_default_witness(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    trail.execute(f"DELETE FROM {trail.t('audit_records')} WHERE seq > 8")
    trail.execute(f"DELETE FROM {trail.t('audit_checkpoints')} WHERE seq > 8")
    if trail.kind == "sqlite":  # the CLI finds the witness beside the data dir by itself
        capsys.readouterr()
        code = run(["audit", "verify", *trail.store_args, "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == 1 and broken(report) == ("truncated", "checkpoint", 9)
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report) == ("truncated", "checkpoint", 9)
    assert "9..12" in report["error"]["message"]


def test_truncation_message_names_every_missing_record(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()  # checkpoints at 4, 8, 12 and the close at 12
    trail.execute(f"DELETE FROM {trail.t('audit_records')} WHERE seq > 7")
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report) == ("truncated", "checkpoint", 8)
    assert "seq 8..12 are missing" in report["error"]["message"]


def _forge_after(trail: Trail, *, time: str) -> int:
    last = trail.record(len(USERS))
    doc = last.doc()
    doc.update(time=time, request_id="req_forged")
    body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
    prev_user = trail.execute(
        f"SELECT hash FROM {trail.t('audit_records')} WHERE user_key = {_lit(last.user_key)} "
        "ORDER BY seq DESC LIMIT 1")[0][0]
    h = record_hash(last.hash, last.user_key, prev_user, body.encode())
    seq = last.seq + 1
    trail.put(StoredRecord(seq, h, last.hash, last.user_key, prev_user, body, index_fields(doc)))
    return seq


def test_correctly_linked_forged_tail_record_fails_verification(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    old = format_rfc3339(datetime.now(UTC) - timedelta(days=1))  # cadence here: 1 h
    seq = _forge_after(trail, time=old)
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report) == ("unsealed", "checkpoint", seq)
    assert "older than the sealing interval" in report["error"]["message"]


def test_forged_tail_record_dated_in_the_future_fails_verification(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    seq = _forge_after(trail, time=format_rfc3339(datetime.now(UTC) + timedelta(days=1)))
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report) == ("unsealed", "checkpoint", seq)
    assert "dated in the future" in report["error"]["message"]


def test_trail_with_every_checkpoint_deleted_and_no_witness_fails(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    trail.execute(f"DELETE FROM {trail.t('audit_checkpoints')}")
    empty = trail.tmp / "empty-witness"
    empty.mkdir()
    capsys.readouterr()
    code = run(["audit", "verify", *trail.store_args, "--public-key", str(trail.key),
                "--checkpoints", str(empty), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1 and broken(report) == ("unsealed", "checkpoint", 1)
    assert report["unsealed_records"] == len(USERS)


def test_fresh_unsealed_record_is_only_a_warning(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    # What a running gateway's newest records look like before the idle timer seals them.
    trail = trail_factory(checkpoint_every_s=30.0)
    _forge_after(trail, time=format_rfc3339(datetime.now(UTC)))
    code, report = verify(trail, capsys)
    assert code == 0 and report["unsealed_records"] == 1
    assert any("not sealed yet" in w for w in report["warnings"])


def export_bundle(trail: Trail, capsys: pytest.CaptureFixture[str], user: str = "alice") -> dict[str, Any]:
    out = trail.tmp / f"{user}-{uuid.uuid4().hex[:6]}.json"
    assert run(["audit", "export", *trail.store_args, "--user", user, "--proof", "-o", str(out)]) == 0
    return dict(orjson.loads(out.read_bytes()))


def verify_bundle(trail: Trail, bundle: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    path = trail.tmp / f"bundle-{uuid.uuid4().hex[:6]}.json"
    path.write_bytes(orjson.dumps(bundle))
    capsys.readouterr()
    # Offline: no --store, only the bundle and the public key.
    code = run(["audit", "verify", "--bundle", str(path), "--public-key", str(trail.key), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_user_export_with_proof_verifies_offline(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    bundle = export_bundle(trail, capsys)
    seqs = [r["seq"] for r in bundle["subjects"][0]["records"]]
    assert seqs == [n + 1 for n, u in enumerate(USERS) if u == "alice"]
    assert bundle["checkpoint"]["payload"]["users"] == 3
    code, report = verify_bundle(trail, bundle, capsys)
    assert code == 0, report
    assert report["records"] == len(seqs)


def test_dropping_alices_last_record_from_her_export_is_detected(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    bundle = export_bundle(trail, capsys)
    bundle["subjects"][0]["records"].pop()
    code, report = verify_bundle(trail, bundle, capsys)
    assert code == 1 and report["error"]["kind"] == "truncated"


@pytest.mark.parametrize("index", [0, 2])
def test_dropping_a_first_or_middle_record_from_an_export_is_detected(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str], index: int
) -> None:
    trail = trail_factory()
    bundle = export_bundle(trail, capsys)
    dropped = bundle["subjects"][0]["records"].pop(index)
    code, report = verify_bundle(trail, bundle, capsys)
    assert code == 1 and report["error"]["kind"] == "deleted"
    assert report["error"]["seq"] != dropped["seq"]


def test_edited_record_or_forged_checkpoint_in_a_bundle_is_detected(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    bundle = export_bundle(trail, capsys)
    rec = bundle["subjects"][0]["records"][1]
    rec["body"] = rec["body"].replace("mock-gpt", "mock-gpt-admin")
    code, report = verify_bundle(trail, bundle, capsys)
    assert code == 1 and (report["error"]["kind"], report["error"]["seq"]) == ("modified", rec["seq"])

    bundle = export_bundle(trail, capsys)
    # Pretend alice had no records after her second one: a new root needs a new signature.
    bundle["checkpoint"]["payload"]["users_root"] = "00" * 32
    code, report = verify_bundle(trail, bundle, capsys)
    assert code == 1 and report["error"]["kind"] == "checkpoint"


def test_verify_user_checks_one_subjects_chain_in_the_database(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    code, report = verify(trail, capsys, "--user", "alice")
    assert code == 0 and report["records"] == USERS.count("alice")
    # Remove alice's newest record (seq 12) and re-point the global chain around it: the
    # per-user heads no longer match the signed tree.
    trail.execute(f"DELETE FROM {trail.t('audit_records')} WHERE seq = 12")
    code, report = verify(trail, capsys, "--user", "alice")
    assert code == 1 and "do not match the signed checkpoint" in report["error"]["message"]


def test_verify_since_checks_the_per_user_link_into_the_range(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    # seq 11 (bob) is the last record before --until; make its user link skip bob's previous
    # record (seq 8) and re-hash it: nothing later in the range links to it.
    rec = trail.record(11)
    h = record_hash(rec.prev_hash, rec.user_key, None, rec.body.encode())
    trail.execute(f"UPDATE {trail.t('audit_records')} SET user_prev = NULL, hash = '{h}' WHERE seq = 11")
    until = trail.record(12).index["time"]
    since = trail.record(10).index["time"]
    code, report = verify(trail, capsys, "--since", since, "--until", until)
    assert code == 1
    assert broken(report) == ("modified", "user", 11)


def test_heartbeat_gap_while_the_gateway_was_up_is_reported(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    # A writer that stopped sealing for a minute while up (not an attacker: they cannot sign):
    # the signed cadence says a checkpoint was due every 0.05 s.
    from pep.audit.checkpoints import Signer, load_private_key

    trail = trail_factory(checkpoint_every_s=0.05, seal_idle_s=0.01)
    rows = trail.execute(f"SELECT payload, signature FROM {trail.t('audit_checkpoints')} ORDER BY id")
    last = Checkpoint(orjson.loads(rows[-1][0]), rows[-1][1])
    signer = Signer(load_private_key(trail.tmp / "audit-signing-key.pem"), "w")
    late = format_rfc3339(datetime.fromisoformat(last.payload["time"]) + timedelta(minutes=1))
    cp = signer.sign(kind="heartbeat", seq=last.seq, head=last.head, prev_checkpoint=last.hash,
                     time=late, interval_s=0.05, user_heads={})
    trail.execute(f"INSERT INTO {trail.t('audit_checkpoints')} (seq, time, kind, payload, signature, hash) "
                  f"VALUES ({cp.seq}, '{late}', 'heartbeat', {_lit(orjson.dumps(cp.payload).decode())}, "
                  f"'{cp.signature}', '{cp.hash}')")
    code, report = verify(trail, capsys)
    assert code == 1 and broken(report)[:2] == ("gap", "checkpoint")


def test_verify_user_uses_the_witness_when_newest_checkpoints_were_deleted(
    trail_factory: Callable[..., Trail], capsys: pytest.CaptureFixture[str]
) -> None:
    trail = trail_factory()
    # Drop alice's newest record (seq 12) and every checkpoint that saw it: in the database
    # alone, an older checkpoint (seq 8) makes her shorter history look complete.
    trail.execute(f"DELETE FROM {trail.t('audit_records')} WHERE seq = 12")
    trail.execute(f"DELETE FROM {trail.t('audit_checkpoints')} WHERE seq >= 12")
    empty = trail.tmp / "empty-witness"
    empty.mkdir()
    capsys.readouterr()
    code = run(["audit", "verify", *trail.store_args, "--public-key", str(trail.key),
                "--checkpoints", str(empty), "--user", "alice", "--json"])
    assert code == 0, capsys.readouterr().out  # what the database alone can show
    code, report = verify(trail, capsys, "--user", "alice")
    assert code == 1 and "do not match the signed checkpoint" in report["error"]["message"]
