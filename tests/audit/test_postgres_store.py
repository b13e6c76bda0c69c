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

from .helpers import make_event

pytestmark = pytest.mark.postgres


@pytest.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    name = f"audit_t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    await conn.close()


def pg_settings(dsn: str, schema: str, **kw: object) -> AuditSettings:
    base: dict[str, object] = {"store": dsn, "pg_schema": schema, "checkpoint_every_s": 3600.0,
                               "seal_idle_s": 3600.0,
                               "checkpoint_every_records": 50}
    base.update(kw)
    return AuditSettings(**base)  # type: ignore[arg-type]


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
    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute(f'DELETE FROM "{schema}".audit_records WHERE seq = 3')
    await conn.close()
    report = await verify(postgres_dsn, schema, tmp_path)
    assert report.error is not None and (report.error.kind, report.error.seq) == ("deleted", 3)


async def test_dropped_connection_makes_append_raise_audit_unavailable(
    postgres_dsn: str, schema: str, tmp_path: Path
) -> None:
    store = open_store(pg_settings(postgres_dsn, schema), tmp_path)
    await store.start()
    await store.append(make_event("alice", 0))
    holder = await asyncpg.connect(postgres_dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(f'SELECT * FROM "{schema}".audit_head WHERE id = 1 FOR UPDATE')
        pending = asyncio.create_task(store.append(make_event("alice", 1)))
        # Wait until the store's batch is blocked on the head lock, then kill its connection.
        # (Generous bound: the database is shared with concurrent suites.)
        for _ in range(500):
            pids = await holder.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'regogate-audit' "
                "AND wait_event_type = 'Lock' AND query LIKE $1", f"%{schema}%")
            if pids:
                break
            await asyncio.sleep(0.02)
        assert pids, "the store never blocked on the head lock"
        for row in pids:
            await holder.execute("SELECT pg_terminate_backend($1)", row["pid"])
        with pytest.raises(AuditUnavailable):
            await pending
        await tx.rollback()
    finally:
        # A failure above must not leave the head row locked: the schema fixture's DROP
        # would then wait for ever.
        await holder.close()
    await store.append(make_event("alice", 2))  # the pool reconnects
    await store.close()
    report = await verify(postgres_dsn, schema, tmp_path)
    # record 1, the audit.outage record for the failed batch, record 2
    assert report.valid and report.records == 3
    reader = PostgresAuditReader(postgres_dsn, schema=schema)
    outage = [r.doc() async for r in reader.records()][1]
    await reader.close()
    assert outage["event"] == "audit.outage" and outage["extra"]["failed_records"] == 1


async def test_unreachable_database_fails_start_with_audit_unavailable(tmp_path: Path) -> None:
    store = open_store(AuditSettings(store="postgresql://postgres@127.0.0.1:1/test", write_timeout_s=1), tmp_path)
    with pytest.raises(AuditUnavailable):
        await store.start()
