"""More tampering the verifier must pinpoint, with the message an auditor reads: a forged
body whose hash was recomputed, a user_key column moved to someone else, a run of deleted
records, a trail cut at its start, renumbered records, and checkpoints with no key to check."""

from __future__ import annotations

from pathlib import Path

from pep.audit.reader import SqliteAuditReader
from pep.audit.records import record_hash
from pep.audit.verify import verify_trail

from .test_verify_tamper import db, load, trail, verify

__all__ = ["trail"]  # the fixture, shared with the main tamper suite


async def test_a_non_json_body_with_a_recomputed_hash_is_reported(trail: Path) -> None:
    with db(trail) as conn:
        rec = load(conn, 3)
        body = "not json"
        forged = record_hash(rec.prev_hash, rec.user_key, rec.user_prev, body.encode())
        conn.execute("UPDATE audit_records SET body = ?, hash = ? WHERE seq = 3", (body, forged))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 3)
    assert report.error.message == "record body is not valid JSON"


async def test_a_user_key_column_moved_to_another_subject_is_reported(trail: Path) -> None:
    with db(trail) as conn:
        rec = load(conn, 4)
        forged = record_hash(rec.prev_hash, "someone-else", rec.user_prev, rec.body.encode())
        conn.execute("UPDATE audit_records SET user_key = 'someone-else', hash = ? WHERE seq = 4",
                     (forged,))
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("modified", 4)
    assert report.error.message == "user_key column differs from the hashed record"


async def test_a_run_of_deleted_records_names_the_whole_range(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq IN (5, 6, 7)")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq) == ("deleted", "global", 5)
    assert report.error.message == "record(s) seq 5..7 are missing"


async def test_a_trail_cut_at_its_start_does_not_begin_at_genesis(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq IN (1, 2)")
    report = await verify(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("deleted", 1)
    assert report.error.message == (
        "the trail does not start at the genesis record (first stored seq 3)")


async def test_checkpoints_without_a_public_key_cannot_be_trusted(trail: Path) -> None:
    reader = SqliteAuditReader(trail / "audit.db")
    try:
        report = await verify_trail(reader, public_keys=[])
    finally:
        await reader.close()
    assert not report.valid and report.error is not None
    assert (report.error.kind, report.error.chain) == ("checkpoint", "checkpoint")
    assert report.error.message == "no public key given: checkpoint signatures cannot be checked"
