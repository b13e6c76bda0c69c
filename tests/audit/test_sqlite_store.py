"""SQLite store: group commit batches, acknowledges only after commit, fails closed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pep.audit.events import AuditUnavailable
from pep.audit.factory import open_store
from pep.audit.sqlite_store import SqliteAuditStore

from .helpers import make_event, settings


def count(tmp: Path) -> int:
    with sqlite3.connect(tmp / "audit.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM audit_records").fetchone()[0])


async def test_concurrent_appends_are_batched_into_few_transactions(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path), tmp_path)
    assert isinstance(store, SqliteAuditStore)
    await store.start()
    # Hold the database write lock from another connection: the writer's first commit waits,
    # and every append arriving meanwhile must join the next transaction, not one of its own.
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    tasks = [asyncio.create_task(store.append(make_event("alice", n))) for n in range(200)]
    await asyncio.sleep(0.3)
    assert not any(t.done() for t in tasks), "an append was acknowledged before any commit"
    blocker.execute("COMMIT")
    await asyncio.gather(*tasks)
    assert store.stats.records == 200
    assert store.stats.transactions <= 3
    assert count(tmp_path) == 200
    await store.close()


async def test_acknowledged_records_are_visible_to_another_connection(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path), tmp_path)
    await store.start()
    await asyncio.gather(*(store.append(make_event("bob", n)) for n in range(50)))
    # Still running (no close, no checkpoint): the acknowledgement alone implies commit.
    assert count(tmp_path) == 50
    await store.close()


async def test_a_cancelled_append_is_still_written_and_the_store_carries_on(
        tmp_path: Path) -> None:
    from .test_verify_tamper import verify

    store = open_store(settings(tmp_path), tmp_path)
    assert isinstance(store, SqliteAuditStore)
    await store.start()
    # Hold the write lock so the appends are still queued when their requests are cancelled.
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    cancelled = [asyncio.create_task(store.append(make_event("alice", n))) for n in range(5)]
    kept = [asyncio.create_task(store.append(make_event("bob", n))) for n in range(5, 8)]
    await asyncio.sleep(0.1)
    for task in cancelled:
        task.cancel()
    blocker.execute("COMMIT")
    blocker.close()
    results = await asyncio.gather(*cancelled, *kept, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:5])
    assert results[5:] == [None, None, None]  # acknowledged only once committed
    await store.append(make_event("carol", 9))
    assert count(tmp_path) == 9
    await store.close()
    report = await verify(tmp_path)
    assert report.valid, report


async def test_locked_database_makes_append_raise_audit_unavailable(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path, write_timeout_s=0.3), tmp_path)
    await store.start()
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(AuditUnavailable):
        await store.append(make_event("alice", 1))
    ok, detail = await store.ready()
    assert not ok and "error" in detail
    blocker.execute("ROLLBACK")
    await asyncio.sleep(0.4)  # let the writer finish its own timed-out attempt
    await store.append(make_event("alice", 2))  # recovers once the lock is gone
    assert (await store.ready())[0]
    await store.close()


async def test_failed_batch_leaves_the_chain_consistent(tmp_path: Path) -> None:
    from .test_verify_tamper import verify

    store = open_store(settings(tmp_path, write_timeout_s=0.3), tmp_path)
    await store.start()
    await store.append(make_event("alice", 0))
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(AuditUnavailable):
        await store.append(make_event("alice", 1))
    blocker.execute("ROLLBACK")
    await asyncio.sleep(0.4)
    await store.append(make_event("alice", 2))
    await store.close()
    report = await verify(tmp_path)
    assert report.valid, report.error


async def test_append_after_close_raises_audit_unavailable(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path), tmp_path)
    await store.start()
    await store.close()
    with pytest.raises(AuditUnavailable):
        await store.append(make_event("alice", 1))


async def test_second_writer_on_the_same_database_is_refused(tmp_path: Path) -> None:
    first = open_store(settings(tmp_path), tmp_path)
    await first.start()
    second = open_store(settings(tmp_path), tmp_path)
    with pytest.raises(AuditUnavailable):
        await second.start()
    await first.close()


async def test_restart_continues_the_chain(tmp_path: Path) -> None:
    from .test_verify_tamper import verify

    for run in range(2):
        store = open_store(settings(tmp_path), tmp_path)
        await store.start()
        await asyncio.gather(*(store.append(make_event(u, run * 10 + n))
                               for n, u in enumerate(["alice", "bob", "alice"])))
        await store.close()
    report = await verify(tmp_path)
    # The first run's three intents never got a terminal record: the restart closed them.
    assert report.valid and report.records == 9


async def test_idle_store_writes_heartbeat_checkpoints(tmp_path: Path) -> None:
    from pep.audit.reader import SqliteAuditReader

    store = open_store(settings(tmp_path, checkpoint_every_s=0.05, checkpoint_dir=tmp_path / "cp"), tmp_path)
    await store.start()
    await store.append(make_event("alice", 1))
    await asyncio.sleep(0.5)
    await store.close()
    reader = SqliteAuditReader(tmp_path / "audit.db")
    kinds = [cp.payload["kind"] for cp in await reader.checkpoints()]
    await reader.close()
    assert "heartbeat" in kinds and kinds[-1] == "close"
    assert list((tmp_path / "cp").glob("checkpoint-*.json"))


async def test_signing_key_is_created_private(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path), tmp_path)
    key = tmp_path / "audit-signing-key.pem"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
    await store.start()
    await store.close()


async def test_outage_is_recorded_with_its_span_once_the_store_is_back(tmp_path: Path) -> None:
    from pep.audit.reader import SqliteAuditReader

    store = open_store(settings(tmp_path, write_timeout_s=0.3), tmp_path)
    await store.start()
    await store.append(make_event("alice", 1))
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(AuditUnavailable):
        await store.append(make_event("alice", 2))
    ok, _ = await store.ready()
    assert not ok
    blocker.execute("ROLLBACK")
    blocker.close()
    ok, detail = await store.ready()  # the probe is the outage record's commit
    assert ok, detail
    await store.append(make_event("alice", 3))
    await store.close()
    reader = SqliteAuditReader(tmp_path / "audit.db")
    docs = [r.doc() async for r in reader.records()]
    await reader.close()
    assert [d["event"] for d in docs] == ["request.intent", "audit.outage", "request.intent"]
    span = docs[1]["extra"]
    assert span["failed_records"] >= 1 and span["from"] <= span["to"] == docs[1]["time"]
    assert "locked" in span["error"]


async def test_under_concurrency_the_commit_window_gathers_records_arriving_apart(
    tmp_path: Path,
) -> None:
    store = open_store(settings(tmp_path, commit_window_ms=50), tmp_path)
    assert isinstance(store, SqliteAuditStore)
    await store.start()
    # Two at once: the writer has seen concurrency (a commit of more than one record).
    await asyncio.gather(store.append(make_event("alice", 0)), store.append(make_event("alice", 1)))
    assert store.stats.records == 2
    before = store.stats.transactions

    async def later(n: int) -> None:
        await asyncio.sleep(0.005 * n)  # arriving one by one, well inside the window
        await store.append(make_event("alice", 10 + n))
        # Acknowledged means committed: visible to another connection.
        assert count(tmp_path) >= 3

    await asyncio.gather(*(later(n) for n in range(4)))
    assert store.stats.records == 6
    assert store.stats.transactions - before == 1, "records inside the window share one commit"
    await store.close()


async def test_without_concurrency_the_window_never_delays_a_lone_record(tmp_path: Path) -> None:
    store = open_store(settings(tmp_path, commit_window_ms=50), tmp_path)
    assert isinstance(store, SqliteAuditStore)
    await store.start()
    for n in range(3):  # one at a time: each commit carries one record, no window opens
        await store.append(make_event("bob", n))
        assert store._last_batch == 1
    assert store.stats.transactions == 3
    await store.close()


async def test_a_batch_larger_than_one_insert_is_written_whole_in_order_and_verifies(
        tmp_path: Path) -> None:
    """The writer inserts a batch as multi-row INSERTs of at most INSERT_ROWS rows: a batch
    of 2.5 statements' worth lands in one commit (two at most), in arrival order, every row exactly as
    linked (the verifier recomputes hashes, links and index columns)."""
    from pep.audit.records import ALL_COLUMNS
    from pep.audit.sqlite_schema import insert_record_sql
    from pep.audit.sqlite_store import INSERT_ROWS, insert_rows_sql

    from .test_verify_tamper import verify

    assert insert_rows_sql(1) == insert_record_sql().replace("INSERT INTO", "INSERT OR ROLLBACK INTO")
    assert insert_rows_sql(3).count("?") == 3 * len(ALL_COLUMNS)
    store = open_store(settings(tmp_path), tmp_path)
    assert isinstance(store, SqliteAuditStore)
    await store.start()
    blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # everything below queues up for one batch
    n = 2 * INSERT_ROWS + INSERT_ROWS // 2
    users = ("alice", "bob", "carol")
    tasks = [asyncio.create_task(store.append(make_event(users[i % 3], i))) for i in range(n)]
    await asyncio.sleep(0.2)
    blocker.execute("COMMIT")
    await asyncio.gather(*tasks)
    # The writer may have taken the first record alone before the rest queued behind it.
    assert store.stats.largest_batch >= n - 1 > 2 * INSERT_ROWS
    await store.close()
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        rows = conn.execute("SELECT seq, request_id FROM audit_records ORDER BY seq").fetchall()
    assert rows == [(i + 1, f"req_{users[i % 3]}_{i}") for i in range(n)]
    report = await verify(tmp_path)
    assert report.valid, report.error


async def test_a_row_that_fails_rolls_back_its_whole_batch_and_fails_every_record_of_it(
        tmp_path: Path) -> None:
    """INSERT OR ROLLBACK: a conflict on a later row of a multi-row INSERT undoes the rows
    before it too, no record of the batch is acknowledged, and the store is still usable."""
    store = open_store(settings(tmp_path), tmp_path)
    assert isinstance(store, SqliteAuditStore)
    await store.start()
    await store.append(make_event("alice", 0))  # seq 1
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # A row at seq 4 that the writer does not know about: its next batch (seq 2..5) collides.
    other.execute("INSERT INTO audit_records SELECT 4, hash, prev_hash, user_key, user_prev, time, "
                  "event, 'req_planted', decision_id, subject, issuer, email, teams, "
                  "model_requested, model_served, decision, status, tokens_in, tokens_out, "
                  "cost_usd, body FROM audit_records WHERE seq = 1")
    tasks = [asyncio.create_task(store.append(make_event("alice", n))) for n in range(1, 5)]
    await asyncio.sleep(0.2)
    other.execute("COMMIT")
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # Normally one batch (seq 2..5); should the writer have taken the first record alone,
    # that one commits and the batch that collides is 3..5. Either way the record before the
    # collision in the failing batch (seq 3) is not kept.
    assert all(isinstance(r, AuditUnavailable) for r in results[1:]), results
    seqs = [r[0] for r in other.execute("SELECT seq FROM audit_records ORDER BY seq")]
    assert seqs == ([1, 4] if isinstance(results[0], AuditUnavailable) else [1, 2, 4])
    other.execute("DELETE FROM audit_records WHERE seq = 4")
    await store.append(make_event("alice", 9))  # the outage record, then this one
    assert [r[0] for r in other.execute("SELECT event FROM audit_records ORDER BY seq")][-2:] == [
        "audit.outage", "request.intent"]
    other.close()
    await store.close()
