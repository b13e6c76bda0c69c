"""PostgreSQL store on the real server: replicas share one chain; failures are 503s."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pep.audit.checkpoints import DEFAULT_PUBLIC_KEY_NAME, load_public_key
from pep.audit.events import AuditUnavailable
from pep.audit.factory import open_store
from pep.audit.postgres_reader import PostgresAuditReader
from pep.audit.postgres_store import PostgresAuditStore
from pep.audit.settings import AuditSettings
from pep.audit.verify import VerifyReport, verify_trail

from tests.conftest import drop_pg_schema, pg_connect

from .helpers import make_event

pytestmark = pytest.mark.postgres


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    name = f"audit_t_{uuid.uuid4().hex[:12]}"
    yield name
    await drop_pg_schema(postgres_dsn, name)


def pg_settings(dsn: str, schema: str, **kw: object) -> AuditSettings:
    base: dict[str, object] = {"store": dsn, "pg_schema": schema, "checkpoint_every_s": 3600.0,
                               "seal_idle_s": 3600.0,
                               "checkpoint_every_records": 50}
    base.update(kw)
    return AuditSettings(**base)


async def verify(dsn: str, schema: str, tmp: Path) -> VerifyReport:
    reader = PostgresAuditReader(dsn, schema=schema)
    try:
        return await verify_trail(reader, public_keys=[load_public_key(tmp / DEFAULT_PUBLIC_KEY_NAME)])
    finally:
        await reader.close()


async def test_two_replicas_appending_concurrently_make_one_valid_trail(
    postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    replicas = [open_store(pg_settings(postgres_dsn, schema, replica_id=f"r{i}"), tmp_path)
                for i in range(2)]
    await asyncio.gather(*(r.start() for r in replicas))
    users = ["alice", "bob", "carol"]
    await asyncio.gather(*(
        replicas[n % 2].append(make_event(users[n % 3], n)) for n in range(300)
    ))
    stats = [r.stats for r in replicas if isinstance(r, PostgresAuditStore)]
    assert sum(s.records for s in stats) == 300
    assert all(s.transactions < s.records for s in stats)  # group commit batched
    await asyncio.gather(*(r.close() for r in replicas))
    report = await verify(postgres_dsn, schema, tmp_path)
    assert report.valid, report.error
    assert report.records == 300 and report.users == 3
    assert report.checkpoints_verified >= 2


async def test_tampered_postgres_record_is_pinpointed(postgres_dsn: str, schema: str, tmp_path: Path) -> None:
    store = open_store(pg_settings(postgres_dsn, schema), tmp_path)
    await store.start()
    for n in range(5):
        await store.append(make_event("alice", n))
    await store.close()
    conn = await pg_connect(postgres_dsn)
    try:
        await conn.execute(f'DELETE FROM "{schema}".audit_records WHERE seq = 3')
    finally:
        await conn.close(timeout=10)
    report = await verify(postgres_dsn, schema, tmp_path)
    assert report.error is not None and (report.error.kind, report.error.seq) == ("deleted", 3)


async def test_dropped_connection_makes_append_raise_audit_unavailable(
    postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    # Deterministic: the store's write is parked on a row lock we hold, we find exactly the
    # backend our lock blocks (pg_blocking_pids) and kill it. The store's own timeout is far
    # longer than any wait here, so only the dropped connection can fail the append, however
    # slow the machine. Everything is released in finally blocks, so a failure never leaves
    # a transaction open that would block the schema's cleanup.
    store = open_store(pg_settings(postgres_dsn, schema, write_timeout_s=300), tmp_path)
    await store.start()
    try:
        await store.append(make_event("alice", 0))
        holder = await pg_connect(postgres_dsn)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute(f'SELECT * FROM "{schema}".audit_head WHERE id = 1 FOR UPDATE')
            pending = asyncio.create_task(store.append(make_event("alice", 1)))
            blocked = await _backends_blocked_by(holder, pending)
            for pid in blocked:
                await holder.execute("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(AuditUnavailable):
                await pending
            await tx.rollback()
        finally:
            await holder.close(timeout=10)
        await store.append(make_event("alice", 2))  # the pool reconnects
    finally:
        await store.close()
    report = await verify(postgres_dsn, schema, tmp_path)
    # record 1, the audit.outage record for the failed batch, record 2
    assert report.valid and report.records == 3
    reader = PostgresAuditReader(postgres_dsn, schema=schema)
    outage = [r.doc() async for r in reader.records()][1]
    await reader.close()
    assert outage["event"] == "audit.outage" and outage["extra"]["failed_records"] == 1


async def _backends_blocked_by(holder: asyncpg.Connection, pending: asyncio.Task[None]) -> list[int]:
    """Wait (event by event, no deadline of our own: pytest-timeout bounds the test) until a
    backend is blocked by holder's lock; fail at once if the append finished instead."""
    me = holder.get_server_pid()
    while True:
        if pending.done():
            pending.result()
            pytest.fail("the append completed although the head row was locked")
        rows = await holder.fetch(
            "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", me)
        if rows:
            return [int(r["pid"]) for r in rows]
        await asyncio.sleep(0.01)


async def test_unreachable_database_fails_start_with_audit_unavailable(tmp_path: Path) -> None:
    store = open_store(AuditSettings(store="postgresql://postgres@127.0.0.1:1/test", write_timeout_s=1), tmp_path)
    with pytest.raises(AuditUnavailable):
        await store.start()


class _InterposeAfterHeadRead:
    """The writer's connection, with another replica's append slipped in right after the
    writer has read the head: its optimistic append must find the head moved."""

    def __init__(self, conn: asyncpg.Connection, other: PostgresAuditStore) -> None:
        self._conn, self._other, self.interposed = conn, other, 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)

    async def fetchrow(self, query: str, *args: object) -> object:
        row = await self._conn.fetchrow(query, *args)
        if self.interposed == 0 and "json_object_agg" in query:
            self.interposed += 1
            await self._other.append(make_event("alice", 999))
        return row


async def test_an_append_that_read_a_head_another_replica_then_moved_is_linked_again_under_the_lock(
    postgres_dsn: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = (open_store(pg_settings(postgres_dsn, schema, replica_id=r), tmp_path)
            for r in ("a", "b"))
    assert isinstance(a, PostgresAuditStore) and isinstance(b, PostgresAuditStore)
    await a.start()
    await b.start()
    try:
        await a.append(make_event("alice", 0))
        proxy = _InterposeAfterHeadRead(await a._writer_conn(), b)

        async def writer_conn() -> object:
            return proxy

        monkeypatch.setattr(a, "_writer_conn", writer_conn)
        await a.append(make_event("alice", 1))  # b appends record 999 in the middle
        assert proxy.interposed == 1 and a.stale_heads == 1
        monkeypatch.undo()
        await a.append(make_event("alice", 2))
        assert a.stale_heads == 1
    finally:
        await a.close()
        await b.close()
    report = await verify(postgres_dsn, schema, tmp_path)
    assert report.valid, report.error
    assert report.records == 4 and report.users == 1
    reader = PostgresAuditReader(postgres_dsn, schema=schema)
    ids = [r.doc()["request_id"] async for r in reader.records()]
    await reader.close()
    assert ids == [make_event("alice", n).request_id for n in (0, 999, 1, 2)]
