"""Tamper evidence: each kind of tampering is pinpointed; an untouched trail verifies clean."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from pep.audit.checkpoints import DEFAULT_PUBLIC_KEY_NAME, load_public_key, read_checkpoint_dir
from pep.audit.factory import open_store
from pep.audit.reader import SqliteAuditReader
from pep.audit.records import ALL_COLUMNS, StoredRecord, index_fields, record_hash
from pep.audit.verify import Break, VerifyReport, verify_trail

from .helpers import make_event, settings

ORDER = ["alice", "bob", "alice", "carol", "alice", "bob", "alice", "bob", "carol", "alice", "bob", "alice"]


@pytest.fixture
async def trail(tmp_path: Path) -> Path:
    store = open_store(settings(tmp_path, checkpoint_every_records=4, checkpoint_dir=tmp_path / "cp"),
                       tmp_path)
    await store.start()
    for n, user in enumerate(ORDER):
        await store.append(make_event(user, n))  # one at a time: checkpoints at 4, 8, 12
    await store.close()
    return tmp_path


async def verify(tmp: Path, *, with_dir: bool = False) -> VerifyReport:
    reader = SqliteAuditReader(tmp / "audit.db")
    try:
        return await verify_trail(
            reader,
            public_keys=[load_public_key(tmp / DEFAULT_PUBLIC_KEY_NAME)],
            extra_checkpoints=read_checkpoint_dir(tmp / "cp") if with_dir else None,
        )
    finally:
        await reader.close()


def db(tmp: Path) -> sqlite3.Connection:
    return sqlite3.connect(tmp / "audit.db", isolation_level=None)


def load(conn: sqlite3.Connection, seq: int) -> StoredRecord:
    row = conn.execute(f"SELECT {', '.join(ALL_COLUMNS)} FROM audit_records WHERE seq = ?", (seq,)).fetchone()
    return StoredRecord.from_row(row)


def forge_body(rec: StoredRecord, **changes: object) -> str:
    doc = rec.doc()
    doc["what"].update(changes)
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


async def test_untouched_trail_verifies_clean(trail: Path) -> None:
    report = await verify(trail, with_dir=True)
    assert report.valid, report.error
    assert report.records == len(ORDER)
    assert report.users == 3
    assert report.checkpoints_verified == report.checkpoints_total >= 4
    assert report.unsealed_records == 0


async def test_changed_field_is_reported_as_modified_at_its_seq(trail: Path) -> None:
    with db(trail) as conn:
        rec = load(conn, 6)
        conn.execute("UPDATE audit_records SET body = ? WHERE seq = 6",
                      (forge_body(rec, model_requested="gpt-secret"),))
    report = await verify(trail)
    assert not report.valid and report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 6)


async def test_edited_index_column_is_reported_as_modified(trail: Path) -> None:
    # Hiding a record from `query --user alice` by editing the subject column alone.
    with db(trail) as conn:
        conn.execute("UPDATE audit_records SET subject = 'mallory' WHERE seq = 3")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 3)
    assert "subject" in report.error.message


async def test_deleted_record_is_reported_with_its_seq(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 5")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("deleted", 5)


async def test_deleted_newest_records_are_caught_through_a_checkpoint(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq > 9")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("truncated", 10)


async def test_truncation_hidden_in_the_store_is_caught_by_the_checkpoint_dir(trail: Path) -> None:
    # The attacker also deletes the store's own checkpoints; the separate location keeps them.
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq > 9")
        conn.execute("DELETE FROM audit_checkpoints WHERE seq > 8")
    # Without the witness: seq 9 is now covered by no checkpoint although it is old.
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("unsealed", 9)
    report = await verify(trail, with_dir=True)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("truncated", 10)


async def test_inserted_forged_record_is_reported_as_inserted(trail: Path) -> None:
    # A careful forger: shifts later records, chains the forgery correctly to its predecessor.
    with db(trail) as conn:
        for seq in range(len(ORDER), 6, -1):
            conn.execute("UPDATE audit_records SET seq = seq + 1 WHERE seq = ?", (seq,))
        before = load(conn, 6)
        body = forge_body(before, model_requested="innocent")
        doc = orjson.loads(body)
        doc["request_id"] = "req_forged"
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        h = record_hash(before.hash, before.user_key, before.hash if before.user_key else None, body.encode())
        forged = StoredRecord(7, h, before.hash, before.user_key, before.hash, body, index_fields(doc))
        conn.execute(f"INSERT INTO audit_records ({', '.join(ALL_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in ALL_COLUMNS)})", forged.row())
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("inserted", 7)


async def test_swapped_records_are_reported_as_reordered(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("UPDATE audit_records SET seq = -1 WHERE seq = 4")
        conn.execute("UPDATE audit_records SET seq = 4 WHERE seq = 5")
        conn.execute("UPDATE audit_records SET seq = 5 WHERE seq = -1")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("reordered", 4)


async def test_altered_record_in_the_middle_of_one_users_chain_names_the_user(trail: Path) -> None:
    with db(trail) as conn:
        alice_seqs = [r[0] for r in conn.execute(
            "SELECT seq FROM audit_records WHERE subject = 'alice' ORDER BY seq")]
        middle = alice_seqs[len(alice_seqs) // 2]
        rec = load(conn, middle)
        conn.execute("UPDATE audit_records SET body = ? WHERE seq = ?",
                     (forge_body(rec, model_served="other"), middle))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq, report.error.subject) == ("modified", middle, "alice")


async def test_rewritten_chain_is_caught_by_the_signed_checkpoint(trail: Path) -> None:
    # The attacker alters seq 2 and recomputes every later hash, so every link looks right.
    with db(trail) as conn:
        recs = [load(conn, s) for s in range(1, len(ORDER) + 1)]
        prev = recs[0].hash
        user_heads = {recs[0].user_key: recs[0].hash}
        for i, rec in enumerate(recs[1:], start=2):
            body = forge_body(rec, model_served="rewritten") if i == 2 else rec.body
            uprev = user_heads.get(rec.user_key)
            h = record_hash(prev, rec.user_key, uprev, body.encode())
            conn.execute("UPDATE audit_records SET body=?, hash=?, prev_hash=?, user_prev=?, "
                         "model_served=? WHERE seq=?",
                         (body, h, prev, uprev, index_fields(orjson.loads(body))["model_served"], i))
            prev = user_heads[rec.user_key] = h
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq) == ("modified", "checkpoint", 4)


async def test_forged_checkpoint_signature_is_rejected(trail: Path) -> None:
    with db(trail) as conn:
        payload = orjson.loads(conn.execute("SELECT payload FROM audit_checkpoints WHERE id = 1").fetchone()[0])
        payload["seq"] = 3
        conn.execute("UPDATE audit_checkpoints SET payload = ? WHERE id = 1", (orjson.dumps(payload).decode(),))
    report = await verify(trail)
    assert report.error is not None
    assert report.error.kind == "checkpoint"


async def test_body_edit_that_leaves_every_index_column_alone_fails_the_hash(trail: Path) -> None:
    with db(trail) as conn:
        rec = load(conn, 6)
        conn.execute("UPDATE audit_records SET body = ? WHERE seq = 6", (forge_body(rec, api="embeddings"),))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 6)
    assert report.error.message == "record content does not match its hash"


async def test_deleted_first_record_is_reported_as_missing_genesis(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 1")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq) == ("deleted", "global", 1)
    assert "genesis" in report.error.message


async def test_rehashed_record_with_a_skipped_user_link_breaks_the_user_chain(trail: Path) -> None:
    # Seq 5 is alice's third record; pointing its user_prev at her first (seq 1) and re-hashing
    # it keeps its content valid, so only the per-user chain shows the omission.
    with db(trail) as conn:
        rec, first = load(conn, 5), load(conn, 1)
        h = record_hash(rec.prev_hash, rec.user_key, first.hash, rec.body.encode())
        conn.execute("UPDATE audit_records SET user_prev = ?, hash = ? WHERE seq = 5", (first.hash, h))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq, report.error.subject) == (
        "modified", "user", 5, "alice")


async def test_renumbered_seq_is_reported(trail: Path) -> None:
    with db(trail) as conn:
        for seq in range(len(ORDER), 6, -1):
            conn.execute("UPDATE audit_records SET seq = seq + 1 WHERE seq = ?", (seq,))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 8)


async def test_edited_user_key_column_is_reported(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("""UPDATE audit_records SET user_key = '["x","mallory"]' WHERE seq = 2""")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 2)


async def test_unreadable_body_is_reported(trail: Path) -> None:
    with db(trail) as conn:
        rec = load(conn, 3)
        body = "{not json"
        h = record_hash(rec.prev_hash, rec.user_key, rec.user_prev, body.encode())
        conn.execute("UPDATE audit_records SET body = ?, hash = ? WHERE seq = 3", (body, h))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 3)
    assert "not valid JSON" in report.error.message


async def test_no_public_key_is_a_checkpoint_failure(trail: Path) -> None:
    reader = SqliteAuditReader(trail / "audit.db")
    try:
        report = await verify_trail(reader, public_keys=[])
    finally:
        await reader.close()
    assert report.error is not None and report.error.kind == "checkpoint"


async def test_unreadable_witness_file_is_a_checkpoint_failure(trail: Path) -> None:
    (trail / "cp" / "checkpoint-000000000099-x-deadbeef.json").write_text("{broken")
    report = await verify(trail, with_dir=True)
    assert report.error is not None and report.error.kind == "checkpoint"


async def test_checkpoint_rewritten_to_a_lower_seq_is_reported(trail: Path) -> None:
    # Re-signing is impossible without the key: a payload edit is an invalid signature.
    with db(trail) as conn:
        payload = orjson.loads(conn.execute("SELECT payload FROM audit_checkpoints ORDER BY id DESC").fetchone()[0])
        payload["prev_checkpoint"] = None
        conn.execute("UPDATE audit_checkpoints SET payload = ? WHERE id = (SELECT MAX(id) FROM audit_checkpoints)",
                     (orjson.dumps(payload).decode(),))
    report = await verify(trail)
    assert report.error is not None and report.error.kind == "checkpoint"


async def test_deletion_messages_name_exactly_the_missing_seqs(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 5")
    report = await verify(trail)
    assert report.error is not None and report.error.message == "record(s) seq 5 are missing"
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 6")
    report = await verify(trail)
    assert report.error is not None and report.error.message == "record(s) seq 5..6 are missing"
    assert (report.error.kind, report.error.chain, report.error.seq) == ("deleted", "global", 5)


async def test_deleted_and_renumbered_record_is_reported_as_deleted(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 5")
        for seq in range(6, len(ORDER) + 1):
            conn.execute("UPDATE audit_records SET seq = seq - 1 WHERE seq = ?", (seq,))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("deleted", 5)
    assert "renumbered" in report.error.message


def test_cadence_and_time_helpers() -> None:
    from pep.audit.checkpoints import Checkpoint
    from pep.audit.verify import allowed_gap, parse_time

    assert allowed_gap(Checkpoint({"interval_s": 10}, "")) == 10 * 1.5 + 5
    assert allowed_gap(Checkpoint({"interval_s": 0}, "")) is None
    assert allowed_gap(Checkpoint({"interval_s": True}, "")) is None
    assert allowed_gap(Checkpoint({}, "")) is None
    naive, aware = parse_time("2025-01-01T00:00:00"), parse_time("2025-01-01T00:00:00Z")
    assert naive == aware and naive is not None and naive.tzinfo is not None
    assert parse_time("yesterday") is None


async def test_unreadable_witness_file_is_named(trail: Path) -> None:
    (trail / "cp" / "checkpoint-000000000099-x-deadbeef.json").write_text("{broken")
    report = await verify(trail, with_dir=True)
    assert report.error is not None
    assert "checkpoint-000000000099-x-deadbeef.json" in report.error.message


async def test_stale_newest_checkpoint_without_close_is_warned_about(trail: Path) -> None:
    from datetime import UTC, datetime, timedelta

    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE kind = 'close'")
    reader = SqliteAuditReader(trail / "audit.db")
    try:
        key = load_public_key(trail / DEFAULT_PUBLIC_KEY_NAME)
        fresh = await verify_trail(reader, public_keys=[key])
        later = await verify_trail(reader, public_keys=[key], now=datetime.now(UTC) + timedelta(days=1))
    finally:
        await reader.close()
    assert fresh.valid and not any("older than its cadence" in w for w in fresh.warnings)
    assert later.valid and any("older than its cadence" in w for w in later.warnings)


async def test_restart_after_a_crash_is_warned_as_an_unclean_shutdown(tmp_path: Path) -> None:
    # Two runs; the first one's close checkpoint is what a kill -9 never writes. The second run
    # links to the first run's last checkpoint, so removing the close row models the crash.
    store = open_store(settings(tmp_path), tmp_path)
    await store.start()
    await store.append(make_event("alice", 1, kind="request.completion"))
    await store.close()
    clean = await verify(tmp_path)
    assert clean.valid and not any("unclean" in w for w in clean.warnings)
    with db(tmp_path) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE kind = 'close'")
    store = open_store(settings(tmp_path), tmp_path)
    await store.start()
    await store.close()
    report = await verify(tmp_path)
    assert report.valid, report.error
    assert any("unclean shutdown" in w for w in report.warnings)


async def _tamper(trail: Path, *statements: str) -> Break | None:
    with db(trail) as conn:
        for sql in statements:
            conn.execute(sql)
    return (await verify(trail)).error


_RENUMBER = [f"UPDATE audit_records SET seq = seq + 1 WHERE seq = {s}" for s in range(12, 6, -1)]


@pytest.mark.parametrize(("statements", "expected"), [
    (["DELETE FROM audit_records WHERE seq = 5"],
     Break("deleted", "global", 5, "record(s) seq 5 are missing", "bob", "req_bob_5")),
    (["DELETE FROM audit_records WHERE seq IN (5, 6)"],
     Break("deleted", "global", 5, "record(s) seq 5..6 are missing", "alice", "req_alice_6")),
    (["UPDATE audit_records SET seq = -1 WHERE seq = 4",
      "UPDATE audit_records SET seq = 4 WHERE seq = 5",
      "UPDATE audit_records SET seq = 5 WHERE seq = -1"],
     Break("reordered", "global", 4, "records seq 4 and 5 are out of order", "alice",
           "req_alice_4")),
    (["UPDATE audit_records SET subject = 'mallory' WHERE seq = 3"],
     Break("modified", "global", 3, "column 'subject' differs from the hashed record", "mallory",
           "req_alice_2")),
    (["DELETE FROM audit_records WHERE seq = 1"],
     Break("deleted", "global", 1,
           "the trail does not start at the genesis record (first stored seq 2)")),
    (_RENUMBER, Break("modified", "global", 8, "seq renumbered (follows seq 6)", "alice",
                      "req_alice_6")),
    (["DELETE FROM audit_records WHERE seq = 5",
      *[f"UPDATE audit_records SET seq = seq - 1 WHERE seq = {s}" for s in range(6, 13)]],
     Break("deleted", "global", 5, "the record seq 5 links to is missing (deleted and "
           "renumbered, or seq 4 was replaced)", "bob", "req_bob_5")),
], ids=["deleted", "deleted-range", "reordered", "index-column", "genesis", "renumbered",
        "deleted-renumbered"])
async def test_a_break_names_its_kind_chain_seq_message_subject_and_request(
        trail: Path, statements: list[str], expected: Break) -> None:
    assert await _tamper(trail, *statements) == expected


async def test_an_inserted_record_is_named_with_its_own_subject_and_request(trail: Path) -> None:
    with db(trail) as conn:
        for seq in range(len(ORDER), 6, -1):
            conn.execute("UPDATE audit_records SET seq = seq + 1 WHERE seq = ?", (seq,))
        before = load(conn, 6)
        doc = orjson.loads(forge_body(before, model_requested="innocent"))
        doc["request_id"] = "req_forged"
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        h = record_hash(before.hash, before.user_key, before.hash, body.encode())
        forged = StoredRecord(7, h, before.hash, before.user_key, before.hash, body, index_fields(doc))
        conn.execute(f"INSERT INTO audit_records ({', '.join(ALL_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in ALL_COLUMNS)})", forged.row())
    assert (await verify(trail)).error == Break(
        "inserted", "global", 7, "record seq 7 is not part of the chain (seq 8 links directly "
        "to seq 6)", "bob", "req_forged")


async def test_an_unsealed_record_names_why_it_is_suspicious(trail: Path) -> None:
    error = await _tamper(trail, "DELETE FROM audit_records WHERE seq > 9",
                          "DELETE FROM audit_checkpoints WHERE seq > 8")
    assert error == Break(
        "unsealed", "checkpoint", 9, "records seq 9..9 are covered by no signed checkpoint and "
        "are older than the sealing interval: appended by someone without the signing key, or "
        "the gateway stopped sealing", "carol", "req_carol_8")


def _checkpoint_times(trail: Path, seq: int) -> set[str]:
    with db(trail) as conn:
        rows = conn.execute("SELECT payload FROM audit_checkpoints").fetchall()
    return {p["time"] for p in (orjson.loads(r[0]) for r in rows) if p["seq"] == seq}


async def test_a_truncation_names_the_checkpoint_that_still_counts_the_records(
        trail: Path) -> None:
    times = _checkpoint_times(trail, 12)
    error = await _tamper(trail, "DELETE FROM audit_records WHERE seq > 9")
    assert error is not None and (error.kind, error.chain, error.seq) == ("truncated",
                                                                         "checkpoint", 10)
    assert error.message in {f"records seq 10..12 are missing: the checkpoint of {t} covers 12 "
                             "records" for t in times}


async def test_a_rewritten_chain_names_the_checkpoint_it_contradicts(trail: Path) -> None:
    (time4,) = _checkpoint_times(trail, 4)
    with db(trail) as conn:
        recs = [load(conn, s) for s in range(1, len(ORDER) + 1)]
        prev, heads = recs[0].hash, {recs[0].user_key: recs[0].hash}
        for i, rec in enumerate(recs[1:], start=2):
            body = forge_body(rec, model_served="rewritten") if i == 2 else rec.body
            uprev = heads.get(rec.user_key)
            h = record_hash(prev, rec.user_key, uprev, body.encode())
            conn.execute("UPDATE audit_records SET body=?, hash=?, prev_hash=?, user_prev=?, "
                         "model_served=? WHERE seq=?",
                         (body, h, prev, uprev, index_fields(orjson.loads(body))["model_served"], i))
            prev = heads[rec.user_key] = h
    assert (await verify(trail)).error == Break(
        "modified", "checkpoint", 4,
        f"records up to seq 4 were rewritten: the checkpoint of {time4} signs a different head")
