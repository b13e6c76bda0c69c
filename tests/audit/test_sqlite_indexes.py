"""Every b-tree of the SQLite audit table is there for a query: each index is the one the
planner uses for a query the readers (or the writer) actually issue. The writer pays for every
index on every record (docs/performance.md, issue 14: WAL frames per commit), so an index no
query uses should not exist, and dropping one must show which query loses it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pep.audit.checkpoints import Signer
from pep.audit.query import AuditQuery
from pep.audit.reader import SqliteAuditReader
from pep.audit.sqlite_schema import ORPHANS_SQL, SCHEMA
from pep.audit.sqlite_store import SqliteAuditStore
from tests.audit.helpers import make_event

# index -> the queries that need it (as the reader builds them; see plans() below)
NEEDED_BY = {
    "audit_records_user": ["previous_of_user", "writer: a subject's last hash"],
    "audit_records_request": ["request_id filter", "orphan intents at start"],
    "audit_records_time": ["since/until filter"],
    "audit_records_person": ["a person's page (user=)"],
    "audit_records_email": ["subjects_with_email"],
    "audit_records_event": ["event filter"],
    "audit_records_decision": ["decision filter", "reason filter"],
    "audit_records_model": ["model filter"],
    "audit_records_served": ["model filter"],
}


async def _fill(path: Path) -> None:
    store = SqliteAuditStore(path, Signer(Ed25519PrivateKey.generate(), "t"),
                             checkpoint_every_s=3600.0, seal_idle_s=3600.0)
    await store.start()
    for n in range(60):
        for user in ("alice", "bob", "carol"):
            await store.append(make_event(user, n))
            await store.append(make_event(user, n, kind="request.completion", tokens=(3, 4)))
        await store.append(make_event("bob", n, kind="policy.deny", allow=False,
                                      model="mock-gpt-admin"))
    await store.close()


def plans(path: Path) -> dict[str, str]:
    """query name -> its EXPLAIN QUERY PLAN, for the SQL the reader and the writer issue."""
    asyncio.run(_fill(path))
    conn = sqlite3.connect(path)
    reader = SqliteAuditReader(path)
    captured: list[tuple[str, Any]] = []

    async def fetch(sql: str, params: Any) -> list[tuple[object, ...]]:
        captured.append((sql, params))
        return []

    reader._fetch = fetch  # type: ignore[method-assign]  # noqa: SLF001

    def explain(sql: str, params: Any) -> str:
        return " | ".join(str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))

    async def via_reader(call: Any) -> str:
        captured.clear()
        result = call()
        if hasattr(result, "__anext__"):
            async for _ in result:
                pass
        else:
            await result
        return " || ".join(explain(sql, params) for sql, params in captured)

    def q(**filters: Any) -> AuditQuery:  # a workspace page: newest first, reads hidden
        return AuditQuery(hide_reads=True, order="desc", limit=51, **filters)

    calls = {
        "previous_of_user": lambda: reader.previous_of_user('["http://127.0.0.1/dev","alice"]', 99),
        "request_id filter": lambda: reader.query(q(request_id="req_alice_7")),
        "since/until filter": lambda: reader.query(q(
            since="2025-01-01T10:00:30Z", until="2025-01-01T10:00:31Z")),
        "seq_bounds": lambda: reader.seq_bounds("2025-01-01T10:00:30Z", "2025-01-01T10:00:31Z"),
        "a person's page (user=)": lambda: reader.query(q(
            user="alice", subjects=("alice",))),
        "subjects_with_email": lambda: reader.subjects_with_email("alice@example.com"),
        "event filter": lambda: reader.query(q(event="policy.deny")),
        "decision filter": lambda: reader.query(q(decision="deny")),
        "reason filter": lambda: reader.query(q(reason="model_not_allowed")),
        "model filter": lambda: reader.query(q(model="mock-gpt")),
    }
    out = {name: asyncio.run(via_reader(call)) for name, call in calls.items()}
    out["orphan intents at start"] = explain(ORPHANS_SQL, (0,))
    store_sql = SqliteAuditStore._user_head.__code__.co_consts  # noqa: SLF001
    (head_sql,) = [c for c in store_sql if isinstance(c, str) and c.startswith("SELECT")]
    out["writer: a subject's last hash"] = explain(head_sql, ('["x","alice"]',))
    conn.close()
    return out


def test_each_index_of_the_audit_table_is_used_by_the_queries_that_need_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript(SCHEMA)
    indexes = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'audit_records' "
        "AND sql IS NOT NULL")}
    # A new index comes with the query that needs it (and a line above); none is unexplained.
    assert indexes == set(NEEDED_BY)
    found = plans(tmp_path / "audit.db")
    for index, queries in NEEDED_BY.items():
        for query in queries:
            assert f"INDEX {index} " in found[query] + " ", (index, query, found[query])
    # ... and no query the workspace issues scans the whole table.
    for query, plan in found.items():
        assert "SCAN audit_records " not in plan + " " or "USING" in plan, (query, plan)
