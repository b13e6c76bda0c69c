"""`audit report` aggregates in the database; its rows equal the in-memory reference on SQLite
and on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from pep.audit.events import DecisionRecord
from pep.audit.export import REPORT_GROUPS, build_report
from pep.audit.factory import open_store
from pep.audit.query import AuditQuery
from pep.audit.reader import AuditReader, open_reader
from pep.audit.settings import AuditSettings

from .helpers import make_event


@pytest.fixture(params=["sqlite", "postgres"])
async def reader(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AuditReader]:
    schema = f"audit_r_{uuid.uuid4().hex[:10]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("postgres_dsn")
    store = open_store(AuditSettings(store=url, pg_schema=schema, checkpoint_every_s=3600.0), tmp_path)
    await store.start()
    events = [
        make_event("alice", 1, kind="request.intent", tokens=(10, 5)),
        make_event("alice", 2, kind="request.completion", tokens=(10, 5)),
        make_event("bob", 3, kind="policy.deny", allow=False, model="mock-gpt-admin", day=2),
        make_event("carol", 4, kind="request.completion", model="mock-gpt-admin", tokens=(7, 3), day=2),
        make_event(None, 5, kind="auth.failure", day=2),
        make_event("alice", 6, kind="upstream.error", day=2),
        make_event("bob", 7, kind="request.aborted", day=3),
        make_event("carol", 10, kind="request.rejected", day=3),
    ]
    no_reason = make_event("carol", 8, kind="policy.deny", allow=False, day=3)
    no_reason.decision = DecisionRecord(allow=False, reasons=[])
    two = make_event("bob", 9, kind="policy.deny", allow=False, day=3)
    two.decision = DecisionRecord(allow=False, reasons=[{"code": "a"}, {"code": "model_not_allowed"}])
    cached = make_event("alice", 11, kind="request.completion", tokens=(10, 5), day=3)
    cached.extra = {"cache": {"hit": True, "filled_by": "req-2", "saved_cost_usd": 0.25}}
    denied_hit = make_event("alice", 12, kind="policy.deny", allow=False, day=3)
    denied_hit.extra = {"cache": {"hit": True, "filled_by": "req-2"}}  # withheld: not a hit
    for ev in [*events, no_reason, two, cached, denied_hit]:
        await store.append(ev)
    await store.close()
    r = open_reader(url, pg_schema=schema)
    yield r
    await r.close()
    if request.param == "postgres":
        conn = await asyncpg.connect(url)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.mark.parametrize("by", REPORT_GROUPS)
@pytest.mark.parametrize("filters", [{}, {"user": "bob"}, {"team": "sales"}, {"since": "2025-01-02"}])
async def test_sql_report_equals_the_in_memory_reference(
    reader: AuditReader, by: str, filters: dict[str, str]
) -> None:
    q = AuditQuery.from_params(filters)
    expected = build_report([r async for r in reader.matching(q)], by=by)
    got = await reader.report(q, by)
    assert got == expected
    assert got, "the filter matched nothing: the comparison would prove nothing"


async def test_cache_hits_and_saved_cost_are_aggregated_from_completions_only(
    reader: AuditReader,
) -> None:
    rows = {(r["user"], r["day"]): r for r in await reader.report(AuditQuery.from_params({}), "user")}
    day3 = next(v for (u, d), v in rows.items() if u == "alice" and d.endswith("03"))
    assert day3["cache_hits"] == 1 and day3["saved_cost_usd"] == 0.25
    assert sum(r["cache_hits"] for r in rows.values()) == 1

