"""The verifier's checkpoint-chain, cadence and sealing checks at their edges (issue 18: every
mutant of pep/audit/verify.py that a tampering could hide behind is killed here).

Checkpoints are signed with the trail's own key (the writer's, as a test may: an attacker
cannot), and times are data passed in (``now=``), never the clock of the test run."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from pep.audit.checkpoints import (
    DEFAULT_KEY_NAME,
    DEFAULT_PUBLIC_KEY_NAME,
    Checkpoint,
    Signer,
    read_witness,
    load_private_key,
    load_public_key,
)
from pep.audit.reader import SqliteAuditReader
from pep.audit.records import ALL_COLUMNS, StoredRecord, index_fields, record_hash
from pep.audit.sqlite_schema import insert_checkpoint_sql
from pep.audit.timefmt import format_rfc3339
from pep.audit.verify import Break, VerifyReport, parse_time, verify_trail

from .test_verify_tamper import ORDER, db, load, trail

__all__ = ["trail"]  # the fixture, shared with the main tamper suite

LIMIT = 3600 * 1.5 + 5  # the fixture's cadence (checkpoint_every_s=3600) plus the tolerance


async def check(tmp: Path, *, extra: list[Checkpoint] | None = None, now: datetime | None = None,
                since: str | None = None, until: str | None = None) -> VerifyReport:
    reader = SqliteAuditReader(tmp / "audit.db")
    try:
        return await verify_trail(reader, public_keys=[load_public_key(tmp / DEFAULT_PUBLIC_KEY_NAME)],
                                  extra_checkpoints=extra, now=now, since=since, until=until)
    finally:
        await reader.close()


async def stored(tmp: Path) -> list[Checkpoint]:
    reader = SqliteAuditReader(tmp / "audit.db")
    try:
        return await reader.checkpoints()
    finally:
        await reader.close()


def signer(tmp: Path) -> Signer:
    return Signer(load_private_key(tmp / DEFAULT_KEY_NAME), "test-writer")


def after(prev: Checkpoint, kind: str, seconds: float, *, seq: int | None = None,
          time: str | None = None, interval_s: float | None = 3600.0, tmp: Path) -> Checkpoint:
    """A checkpoint that follows ``prev`` by ``seconds``, signed with the trail's key."""
    t = parse_time(prev.payload["time"])
    assert t is not None
    return signer(tmp).sign(
        kind=kind, seq=prev.seq if seq is None else seq, head=prev.head, prev_checkpoint=prev.hash,
        time=time or format_rfc3339(t + timedelta(seconds=seconds)), interval_s=interval_s)


def add(tmp: Path, *cps: Checkpoint) -> None:
    with db(tmp) as conn:
        for cp in cps:
            conn.execute(insert_checkpoint_sql(), (cp.seq, cp.payload["time"], cp.payload["kind"],
                                                   orjson.dumps(cp.payload).decode(), cp.signature,
                                                   cp.hash))


def describe(cp: Checkpoint) -> str:
    return f"the {cp.payload['kind']} checkpoint of {cp.payload['time']} (seq {cp.seq})"


def when(cp: Checkpoint, seconds: float = 0.0) -> datetime:
    t = parse_time(cp.payload["time"])
    assert t is not None
    return t + timedelta(seconds=seconds)


async def test_a_clean_report_counts_what_it_checked(trail: Path) -> None:
    cps = await stored(trail)
    close = cps[-1]
    assert close.payload["kind"] == "close"
    report = await check(trail, now=when(close))
    assert report == VerifyReport(
        valid=True, records=len(ORDER), first_seq=1, last_seq=len(ORDER), users=3,
        checkpoints_total=len(cps), checkpoints_verified=len(cps),
        latest_checkpoint={"seq": 12, "time": close.payload["time"], "kind": "close",
                           "writer": close.payload["writer"]},
        unsealed_records=0, error=None, warnings=[])
    assert report.to_dict()["latest_checkpoint"] == report.latest_checkpoint
    assert report.to_dict()["records"] == len(ORDER)


async def test_witness_copies_of_the_stored_checkpoints_are_counted_once(trail: Path) -> None:
    cps = await stored(trail)
    report = await check(trail, extra=list(cps), now=when(cps[-1]))
    assert report.valid, report.error
    assert report.checkpoints_total == report.checkpoints_verified == len(cps)


async def test_a_checkpoint_with_a_bad_signature_is_named_by_its_seq(trail: Path) -> None:
    with db(trail) as conn:
        payload = orjson.loads(conn.execute("SELECT payload FROM audit_checkpoints WHERE id = 2").fetchone()[0])
        payload["head"] = "0" * 64
        conn.execute("UPDATE audit_checkpoints SET payload = ? WHERE id = 2", (orjson.dumps(payload).decode(),))
    report = await check(trail)
    assert report.valid is False and report.to_dict()["valid"] is False
    assert report.error == Break("checkpoint", "checkpoint", None,
                                 f"checkpoint at seq {payload['seq']} has an invalid signature or "
                                 "unknown key")
    assert report.checkpoints_verified == 1  # the start before it


async def test_a_deleted_checkpoint_is_named_by_its_successor(trail: Path) -> None:
    cps = await stored(trail)
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE id = 2")
    report = await check(trail)
    assert report.error == Break("deleted", "checkpoint", cps[2].seq,
                                 f"checkpoint chain broken: the checkpoint before {describe(cps[2])} "
                                 "is missing")


async def test_a_witness_copy_missing_from_the_database_is_named(trail: Path) -> None:
    cps = await stored(trail)
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE id = (SELECT MAX(id) FROM audit_checkpoints)")
    report = await check(trail, extra=[cps[-1]], now=when(cps[-1]))
    assert report.error == Break("deleted", "checkpoint", cps[-1].seq,
                                 f"{describe(cps[-1])} is in the external witness but was deleted "
                                 "from the database")


async def test_a_fork_in_the_checkpoint_chain_is_reported(trail: Path) -> None:
    cps = await stored(trail)
    fork = after(cps[1], "heartbeat", 1, tmp=trail)  # a second successor of the seq 4 checkpoint
    report = await check(trail, extra=[fork])
    assert report.error == Break("checkpoint", "checkpoint", fork.seq,
                                 f"checkpoint chain forks: {describe(fork)} and {describe(cps[2])} "
                                 "follow the same checkpoint")


async def test_a_second_first_checkpoint_is_reported(trail: Path) -> None:
    cps = await stored(trail)
    first = signer(trail).sign(kind="start", seq=0, head=cps[0].head, prev_checkpoint=None,
                               time=cps[0].payload["time"], interval_s=3600.0)
    assert first.hash != cps[0].hash  # another writer name
    report = await check(trail, extra=[first])
    assert report.error == Break("checkpoint", "checkpoint", 0,
                                 f"two first checkpoints: {describe(first)} and {describe(cps[0])}")


async def test_a_checkpoint_that_seals_fewer_records_than_its_predecessor_is_reordered(
        trail: Path) -> None:
    cps = await stored(trail)
    back = after(cps[-1], "heartbeat", 1, seq=cps[-1].seq - 1, tmp=trail)
    report = await check(trail, extra=[back])
    assert report.error == Break("reordered", "checkpoint", back.seq,
                                 f"{describe(back)} seals fewer records than {describe(cps[-1])} "
                                 "before it")
    # The same seq is not fewer.
    same = after(cps[-1], "heartbeat", 1, tmp=trail)
    add(trail, same)
    report = await check(trail, now=when(same))
    assert report.valid, report.error


async def test_the_cadence_allows_exactly_its_interval_plus_the_tolerance(trail: Path) -> None:
    close = (await stored(trail))[-1]
    on_time = after(close, "heartbeat", LIMIT, tmp=trail)
    add(trail, on_time)
    report = await check(trail, now=when(on_time))
    assert report.valid, report.error
    assert report.latest_checkpoint is not None
    assert report.latest_checkpoint["time"] == on_time.payload["time"]
    late = after(on_time, "heartbeat", LIMIT + 0.000001, tmp=trail)
    add(trail, late)
    report = await check(trail, now=when(late))
    assert report.error == Break(
        "gap", "checkpoint", late.seq,
        f"no checkpoint or heartbeat between {on_time.payload['time']} and {late.payload['time']} "
        f"({LIMIT:.0f} s, cadence 3600.0 s) while the gateway was up: checkpoints were deleted or "
        "the writer stopped sealing")


async def test_a_restart_excuses_the_downtime_before_it_but_not_a_gap_after_it(
        trail: Path) -> None:
    close = (await stored(trail))[-1]
    start = after(close, "start", 86400, tmp=trail)
    add(trail, start)
    report = await check(trail, now=when(start))
    assert report.valid, report.error
    assert report.warnings == []  # the writer closed cleanly before it
    late = after(start, "heartbeat", 86400, tmp=trail)
    add(trail, late)
    report = await check(trail, now=when(late))
    assert report.error is not None and (report.error.kind, report.error.seq) == ("gap", late.seq)


async def test_a_restart_after_no_close_is_warned_about_with_both_checkpoints(trail: Path) -> None:
    close = (await stored(trail))[-1]
    beat = after(close, "heartbeat", 1, tmp=trail)
    start = after(beat, "start", 86400, tmp=trail)
    add(trail, beat, start)
    report = await check(trail, now=when(start))
    assert report.valid, report.error
    assert report.warnings == [
        f"unclean shutdown: the writer stopped after {describe(beat)} without a close checkpoint; "
        f"restarted at {start.payload['time']}"]


async def test_a_checkpoint_without_a_readable_time_or_cadence_is_not_held_to_one(
        trail: Path) -> None:
    close = (await stored(trail))[-1]
    undated = after(close, "heartbeat", 0, time="some time", tmp=trail)
    add(trail, undated)
    report = await check(trail, now=when(close))
    assert report.valid, report.error
    no_cadence = after(close, "heartbeat", 0, interval_s=None, tmp=trail)
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE hash = ?", (undated.hash,))
    add(trail, no_cadence, after(no_cadence, "heartbeat", 86400, tmp=trail))
    report = await check(trail, now=when(close, 86400))
    assert report.valid, report.error


async def test_a_stale_newest_checkpoint_is_warned_about_past_its_cadence_only(trail: Path) -> None:
    cps = await stored(trail)
    close = cps[-1]
    assert (await check(trail, now=when(close, 86400))).warnings == []  # a clean close
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints WHERE kind = 'close'")
    last = cps[-2]
    assert (await check(trail, now=when(last, LIMIT))).warnings == []
    report = await check(trail, now=when(last, LIMIT + 0.000001))
    assert report.valid
    assert report.warnings == [
        f"the newest checkpoint ({describe(last)}) is older than its cadence and is not a clean "
        "close: the gateway is down, or its newest checkpoints were deleted"]


async def test_a_trail_without_checkpoints_is_sealed_by_nothing(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints")
        first = load(conn, 1)
    t = parse_time(first.index["time"])
    assert t is not None
    # With no checkpoint there is no cadence: only a record written this very instant passes.
    report = await check(trail, now=t)
    assert report.valid, report.error
    assert report.latest_checkpoint is None and report.unsealed_records == len(ORDER)
    assert report.checkpoints_total == 0
    assert report.warnings == [
        "no checkpoints: deletion of the newest records cannot be detected",
        f"{len(ORDER)} record(s) not sealed yet (seq 1..{len(ORDER)}; sealed within 0 s)"]
    report = await check(trail, now=t + timedelta(microseconds=1))
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq) == ("unsealed", "checkpoint", 1)
    assert "are older than the sealing interval" in report.error.message  # not "in the future"


def forge_tail(tmp: Path, time: str) -> StoredRecord:
    """A record appended after the newest one, correctly chained, that no checkpoint covers."""
    with db(tmp) as conn:
        last = load(conn, len(ORDER))
        doc = last.doc()
        doc.update(time=time, request_id="req_forged")
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        h = record_hash(last.hash, last.user_key, last.hash, body.encode())
        rec = StoredRecord(last.seq + 1, h, last.hash, last.user_key, last.hash, body, index_fields(doc))
        conn.execute(f"INSERT INTO audit_records ({', '.join(ALL_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in ALL_COLUMNS)})", rec.row())
    return rec


async def test_an_unsealed_record_is_accepted_within_the_cadence_either_side_of_now(
        trail: Path) -> None:
    rec = forge_tail(trail, "2025-06-01T12:00:00.000000Z")
    t = parse_time(rec.index["time"])
    assert t is not None
    for offset in (LIMIT, -LIMIT, 0.0):
        report = await check(trail, now=t + timedelta(seconds=offset))
        assert report.valid, (offset, report.error)
        assert report.unsealed_records == 1
        assert report.warnings == [f"1 record(s) not sealed yet (seq 13..13; sealed within {LIMIT:.0f} s)"]
    tail = ("are covered by no signed checkpoint and are {}: appended by someone without the "
            "signing key, or the gateway stopped sealing")
    old = await check(trail, now=t + timedelta(seconds=LIMIT + 0.000001))
    assert old.error == Break("unsealed", "checkpoint", 13,
                              "records seq 13..13 " + tail.format("older than the sealing interval"),
                              "alice", "req_forged")
    future = await check(trail, now=t - timedelta(seconds=LIMIT + 0.000001))
    assert future.error == Break("unsealed", "checkpoint", 13,
                                 "records seq 13..13 " + tail.format("dated in the future"),
                                 "alice", "req_forged")


async def test_an_unsealed_record_without_a_readable_time_fails(trail: Path) -> None:
    forge_tail(trail, "not a time")
    report = await check(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("unsealed", 13)
    assert "older than the sealing interval" in report.error.message


async def test_a_range_ending_before_the_newest_checkpoint_is_neither_truncated_nor_unsealed(
        trail: Path) -> None:
    with db(trail) as conn:
        until = load(conn, 10).index["time"]  # records 1..9
    report = await check(trail, until=until)
    assert report.valid, report.error
    assert (report.first_seq, report.last_seq, report.records) == (1, 9, 9)
    assert report.unsealed_records == 0  # the newest checkpoint is beyond the range


def rewrite_from(conn: sqlite3.Connection, seq: int) -> None:
    """Alter record ``seq`` and recompute every later hash, so every link looks right."""
    recs = [load(conn, s) for s in range(1, len(ORDER) + 1)]
    prev = recs[seq - 2].hash
    heads: dict[str | None, str] = {}
    for rec in recs[:seq - 1]:
        heads[rec.user_key] = rec.hash
    for rec in recs[seq - 1:]:
        doc = rec.doc()
        if rec.seq == seq:
            doc["what"]["model_served"] = "rewritten"
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        uprev = heads.get(rec.user_key)
        h = record_hash(prev, rec.user_key, uprev, body.encode())
        conn.execute("UPDATE audit_records SET body=?, hash=?, prev_hash=?, user_prev=?, "
                     "model_served=? WHERE seq=?",
                     (body, h, prev, uprev, index_fields(doc)["model_served"], rec.seq))
        prev = heads[rec.user_key] = h


async def test_a_range_checks_the_checkpoints_at_both_of_its_ends(trail: Path) -> None:
    with db(trail) as conn:
        rewrite_from(conn, 6)  # the checkpoint at seq 4 still holds, the one at 8 does not
        t4, t9 = load(conn, 4).index["time"], load(conn, 9).index["time"]
    for since, until in ((t4, None), (None, t9), (t4, t9)):
        report = await check(trail, since=since, until=until)
        assert report.error is not None, (since, until)
        assert (report.error.kind, report.error.chain, report.error.seq) == (
            "modified", "checkpoint", 8)


async def test_a_range_starting_at_a_rewritten_checkpoint_checks_that_checkpoint(
        trail: Path) -> None:
    with db(trail) as conn:
        rewrite_from(conn, 2)  # every checkpoint from seq 4 on contradicts the records
        t4 = load(conn, 4).index["time"]
    report = await check(trail, since=t4)
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq) == ("modified", "checkpoint", 4)


async def test_records_renumbered_away_from_their_checkpoints_are_reported(trail: Path) -> None:
    # seq is not hashed: shifting every record keeps each link valid, but the signed
    # checkpoint at seq 4 no longer finds its record.
    with db(trail) as conn:
        conn.execute("UPDATE audit_records SET seq = seq + 100")
    report = await check(trail)
    assert report.error == Break("deleted", "checkpoint", 4, "the record at checkpoint seq 4 is missing")
    assert (report.first_seq, report.last_seq, report.records) == (101, 112, len(ORDER))


def test_the_cadence_allowance_of_a_checkpoint() -> None:
    from pep.audit.verify import allowed_gap

    assert allowed_gap(Checkpoint({"interval_s": 1}, "")) == 6.5
    assert allowed_gap(Checkpoint({"interval_s": 0.5}, "")) == 5.75
    for bad in (-5, 0, 0.0, "10", None, False):  # a cadence of 0 is none at all
        assert allowed_gap(Checkpoint({"interval_s": bad}, "")) is None, bad


def test_a_time_with_an_offset_keeps_its_instant() -> None:
    assert parse_time("2025-01-01T02:00:00+02:00") == datetime(2025, 1, 1, 0, 0, tzinfo=UTC)
    assert parse_time("2025-01-01T00:00:00") == datetime(2025, 1, 1, 0, 0, tzinfo=UTC)


async def test_a_trail_emptied_of_records_is_truncated_from_its_first_seq(trail: Path) -> None:
    cps = await stored(trail)
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records")
    report = await check(trail)
    assert report.error == Break("truncated", "checkpoint", 1,
                                 f"records seq 1..12 are missing: the checkpoint of "
                                 f"{cps[3].payload['time']} covers 12 records")
    assert (report.records, report.first_seq, report.last_seq) == (0, None, None)


async def test_of_two_checkpoints_at_the_same_seq_and_time_the_later_one_is_the_latest(
        trail: Path) -> None:
    close = (await stored(trail))[-1]
    same = after(close, "heartbeat", 0, tmp=trail)
    add(trail, same)
    report = await check(trail, now=when(close))
    assert report.valid, report.error
    assert report.latest_checkpoint == {"seq": 12, "time": close.payload["time"], "kind": "heartbeat",
                                        "writer": "test-writer"}


async def test_a_trail_that_starts_below_seq_one_is_reported_at_its_first_seq(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 1")
        conn.execute("UPDATE audit_records SET seq = seq - 2")  # records 0..10
    report = await check(trail)
    assert report.error == Break(
        "deleted", "global", 0, "the trail does not start at the genesis record (first stored seq 0)")


async def test_unsealed_records_after_a_range_start_past_the_last_checkpoint_are_reported(
        trail: Path) -> None:
    # Two forged records after the newest checkpoint (seq 12), both dated long ago; a range
    # that starts at the second must not hide that neither is sealed.
    forge_tail(trail, "2025-06-01T12:00:00.000000Z")
    with db(trail) as conn:
        last = load(conn, 13)
        doc = last.doc()
        doc.update(time="2025-06-01T12:00:01.000000Z", request_id="req_forged_2")
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        h = record_hash(last.hash, last.user_key, last.hash, body.encode())
        rec = StoredRecord(14, h, last.hash, last.user_key, last.hash, body, index_fields(doc))
        conn.execute(f"INSERT INTO audit_records ({', '.join(ALL_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in ALL_COLUMNS)})", rec.row())
    report = await check(trail, since="2025-06-01T12:00:01.000000Z")
    assert report.records == 1
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("unsealed", 14)


async def test_a_lone_record_at_seq_zero_with_no_checkpoint_is_unsealed(trail: Path) -> None:
    with db(trail) as conn:
        conn.execute("DELETE FROM audit_checkpoints")
        conn.execute("DELETE FROM audit_records WHERE seq > 1")
        conn.execute("UPDATE audit_records SET seq = 0")  # the genesis record, renumbered
    report = await check(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.chain, report.error.seq) == ("unsealed", "checkpoint", 0)


async def test_the_newest_checkpoints_cadence_is_the_one_that_applies(trail: Path) -> None:
    # The writer restarted with a 10 s cadence (20 s with the tolerance) after an hourly one.
    close = (await stored(trail))[-1]
    fast = after(close, "start", 60, interval_s=10.0, tmp=trail)
    add(trail, fast)
    rec = forge_tail(trail, format_rfc3339(when(fast)))
    report = await check(trail, now=when(fast, 20))
    assert report.valid, report.error
    assert report.warnings == [f"1 record(s) not sealed yet (seq {rec.seq}..{rec.seq}; sealed within 20 s)"]
    report = await check(trail, now=when(fast, 100))
    assert report.error is not None and (report.error.kind, report.error.seq) == ("unsealed", rec.seq)
    assert f"the newest checkpoint ({describe(fast)}) is older than its cadence" in report.warnings[0]


async def test_of_two_checkpoints_at_the_same_seq_the_newer_by_time_is_the_latest(
        trail: Path) -> None:
    # The writer's clock stepped back: the heartbeat written after the close is dated before it.
    close = (await stored(trail))[-1]
    stepped_back = after(close, "heartbeat", -10, tmp=trail)
    add(trail, stepped_back)
    report = await check(trail, now=when(close))
    assert report.valid, report.error
    assert report.latest_checkpoint is not None
    assert (report.latest_checkpoint["kind"], report.latest_checkpoint["time"]) == (
        "close", close.payload["time"])


async def test_a_forged_record_at_a_negative_seq_is_not_invisible(trail: Path) -> None:
    # `query --user alice` lists it; the verifier must see it as well.
    with db(trail) as conn:
        first = load(conn, 1)
        doc = first.doc()
        doc["request_id"] = "req_hidden"
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        h = record_hash(first.prev_hash, first.user_key, None, body.encode())
        rec = StoredRecord(-1, h, first.prev_hash, first.user_key, None, body, index_fields(doc))
        conn.execute(f"INSERT INTO audit_records ({', '.join(ALL_COLUMNS)}) VALUES "
                     f"({', '.join('?' for _ in ALL_COLUMNS)})", rec.row())
    report = await check(trail)
    assert report.error is not None
    # It chains to genesis, so the real first record no longer follows it: seq 0 is missing.
    assert report.error == Break("deleted", "global", 0, "record(s) seq 0 are missing", "alice",
                                 "req_alice_0")
    assert report.first_seq == -1


async def test_a_range_from_the_middle_links_each_subject_to_its_record_before_the_range(
        trail: Path) -> None:
    # From seq 2 on: bob's first record there is his first at all (no link before the range),
    # alice's (seq 3) links to her seq 1, which the range does not stream.
    with db(trail) as conn:
        since = load(conn, 2).index["time"]
    report = await check(trail, since=since)
    assert report.valid, report.error
    assert (report.first_seq, report.last_seq, report.records, report.users) == (2, 12, 11, 3)


async def test_a_range_ending_past_an_unsealed_forged_tail_does_not_hide_it(trail: Path) -> None:
    # Product fix (issue 18, verify_trail mutant `report.valid or hi is None`): `--until` used to
    # skip the unsealed-tail rule, so `verify --until <later>` called a forged tail valid.
    rec = forge_tail(trail, "2025-06-01T12:00:00.000000Z")
    t = parse_time(rec.index["time"])
    assert t is not None
    until = "2099-01-01T00:00:00Z"
    report = await check(trail, until=until, now=t + timedelta(seconds=LIMIT + 0.000001))
    assert report.error == Break("unsealed", "checkpoint", 13,
                                 "records seq 13..13 are covered by no signed checkpoint and are "
                                 "older than the sealing interval: appended by someone without the "
                                 "signing key, or the gateway stopped sealing", "alice", "req_forged")
    report = await check(trail, until=until, now=t + timedelta(seconds=LIMIT))
    assert report.valid, report.error
    assert report.warnings == [f"1 record(s) not sealed yet (seq 13..13; sealed within {LIMIT:.0f} s)"]
    # A range ending before the forged record leaves it out, as before.
    report = await check(trail, until=rec.index["time"], now=t + timedelta(days=30))
    assert report.valid, report.error
    assert (report.last_seq, report.unsealed_records) == (12, 0)


async def test_a_checkpoint_without_a_cadence_does_not_end_the_cadence_check(trail: Path) -> None:
    # A checkpoint with no interval_s (or no readable time) is not held to a cadence, but the
    # ones after it still are.
    close = (await stored(trail))[-1]
    for odd in (after(close, "heartbeat", 1, interval_s=None, tmp=trail),
                after(close, "heartbeat", 1, time="some time", tmp=trail)):
        beat = after(close, "heartbeat", 2, tmp=trail)
        beat = signer(trail).sign(kind="heartbeat", seq=close.seq, head=close.head,
                                  prev_checkpoint=odd.hash, time=beat.payload["time"],
                                  interval_s=3600.0)
        late = after(beat, "heartbeat", 86400, tmp=trail)
        report = await check(trail, extra=[odd, beat, late], now=when(late))
        assert report.error is not None, odd.payload
        assert (report.error.kind, report.error.seq) == ("gap", late.seq)
        assert report.error.message.startswith(
            f"no checkpoint or heartbeat between {beat.payload['time']} and {late.payload['time']}")


async def test_an_unreadable_witness_entry_is_named_by_its_file_and_line(trail: Path) -> None:
    path = trail / "witness.jsonl"
    path.write_bytes(b"{broken\n")
    cps = await stored(trail)
    report = await check(trail, extra=read_witness(path), now=when(cps[-1]))
    assert report.error == Break("checkpoint", "checkpoint", None,
                                 "checkpoint at witness.jsonl:1 has an invalid signature or unknown key")
    assert report.checkpoints_verified == len(cps)


async def test_without_a_given_now_the_verifier_uses_the_current_utc_time(trail: Path) -> None:
    # A record dated 2025-06-01 that no checkpoint covers is long past any cadence today.
    forge_tail(trail, "2025-06-01T12:00:00.000000Z")
    report = await check(trail)
    assert report.error is not None
    assert (report.error.kind, report.error.seq) == ("unsealed", 13)
    assert "older than the sealing interval" in report.error.message


async def test_a_broken_per_user_link_is_named_with_its_record(trail: Path) -> None:
    # Record 12 (alice) re-hashed with no user_prev: the global chain still ends at it, but it
    # no longer links to alice's record 10.
    with db(trail) as conn:
        rec = load(conn, 12)
        h = record_hash(rec.prev_hash, rec.user_key, None, rec.body.encode())
        conn.execute("UPDATE audit_records SET user_prev = NULL, hash = ? WHERE seq = 12", (h,))
    report = await check(trail)
    assert report.error == Break("modified", "user", 12, "per-user chain broken: user_prev is not "
                                 "this subject's previous record", "alice", "req_alice_11")
