"""Read-only access to a trail, for verify, query, export, report and the auditor API.

Readers never write and never need the signing key. The SQLite reader opens the database
read-only (``mode=ro``) and runs each call in a worker thread so the API's event loop is never
blocked; WAL lets it read while the gateway writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from pep.audit.checkpoints import Checkpoint
from pep.audit.events import AuditUnavailable
from pep.audit.factory import is_postgres, sqlite_path
from pep.audit.overview_sql import summarise, summary_sql
from pep.audit.query import AuditQuery
from pep.audit.records import ALL_COLUMNS, StoredRecord
from pep.audit.report_sql import assemble, report_sql

CHUNK = 2000
MAX_SUBJECTS_PER_EMAIL = 20
_COLS = ", ".join(ALL_COLUMNS)


class AuditReader(Protocol):
    def records(self, seq_lo: int | None = None, seq_hi: int | None = None) -> AsyncIterator[StoredRecord]:
        """All records with seq in [seq_lo, seq_hi], ascending, streamed in chunks."""
        ...

    async def query(self, q: AuditQuery) -> list[StoredRecord]: ...

    async def count(self, q: AuditQuery) -> int:
        """How many records match (the list views' totals)."""
        ...

    async def subjects_with_email(self, email: str) -> list[str]:
        """The subjects seen with this e-mail (a few at most; index skip-scan)."""
        ...

    def matching(self, q: AuditQuery) -> AsyncIterator[StoredRecord]:
        """Like query() without a result cap, streamed (exports, reports)."""
        ...

    async def checkpoints(self) -> list[Checkpoint]:
        """In the order they were written."""
        ...

    async def seq_bounds(self, since: str | None, until: str | None) -> tuple[int | None, int | None]:
        """Smallest seq with time >= since, largest seq with time < until (None: open end)."""
        ...

    async def previous_of_user(self, user_key: str, before_seq: int) -> StoredRecord | None:
        """The subject's newest record with seq < before_seq."""
        ...

    async def user_heads_at(self, seq: int) -> dict[str, str]:
        """Every subject's newest record hash among records with seq <= ``seq``."""
        ...

    async def report(self, q: AuditQuery, by: str) -> list[dict[str, Any]]:
        """Aggregated by the database (see pep.audit.report_sql)."""
        ...

    async def summary(self, q: AuditQuery, bucket: str) -> dict[str, Any]:
        """Requests per time bucket, decision, team, model and user, with totals
        (pep.audit.overview_sql)."""
        ...

    async def close(self) -> None: ...


class SqliteAuditReader:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            if not self.path.exists():
                raise AuditUnavailable(f"no audit database at {self.path}")
            try:
                conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
                )
                conn.execute("SELECT 1 FROM audit_records LIMIT 1")
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"cannot read audit database {self.path}: {exc}") from exc
            self._conn = conn
        return self._conn

    async def _fetch(self, sql: str, params: list[object] | tuple[object, ...]) -> list[tuple[object, ...]]:
        def run() -> list[tuple[object, ...]]:
            try:
                return self._connect().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit read failed: {exc}") from exc

        async with self._lock:  # one sqlite3 connection: serialise its use across threads
            return await asyncio.to_thread(run)

    async def records(self, seq_lo: int | None = None, seq_hi: int | None = None) -> AsyncIterator[StoredRecord]:
        # No lower bound by default: a row at a negative seq is streamed too (verify reports it).
        after = (seq_lo - 1) if seq_lo is not None else -(2**62)
        hi = seq_hi if seq_hi is not None else 2**62
        while True:
            rows = await self._fetch(
                f"SELECT {_COLS} FROM audit_records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, hi, CHUNK),
            )
            for row in rows:
                yield StoredRecord.from_row(row)
            if len(rows) < CHUNK:
                return
            after = int(rows[-1][0])  # type: ignore[call-overload]

    async def query(self, q: AuditQuery) -> list[StoredRecord]:
        where, params = q.where("sqlite")
        order = "DESC" if q.order == "desc" else "ASC"
        limit = q.limit or 1000
        rows = await self._fetch(
            f"SELECT {_COLS} FROM audit_records WHERE {where} ORDER BY seq {order} LIMIT {int(limit)}",
            params,
        )
        return [StoredRecord.from_row(r) for r in rows]

    async def count(self, q: AuditQuery) -> int:
        where, params = q.where("sqlite")
        rows = await self._fetch(f"SELECT COUNT(*) FROM audit_records WHERE {where}", params)
        n = rows[0][0]
        assert isinstance(n, int)
        return n

    async def subjects_with_email(self, email: str) -> list[str]:
        found: list[str] = []
        while len(found) < MAX_SUBJECTS_PER_EMAIL:
            rows = await self._fetch(
                "SELECT subject FROM audit_records WHERE email = ? AND subject > ? "
                "ORDER BY subject LIMIT 1", (email, found[-1] if found else ""))
            if not rows:
                break
            found.append(str(rows[0][0]))
        return found

    async def matching(self, q: AuditQuery) -> AsyncIterator[StoredRecord]:
        where, params = q.where("sqlite")
        after = -1
        while True:
            rows = await self._fetch(
                f"SELECT {_COLS} FROM audit_records WHERE {where} AND seq > ? ORDER BY seq LIMIT ?",
                [*params, after, CHUNK],
            )
            for row in rows:
                yield StoredRecord.from_row(row)
            if len(rows) < CHUNK:
                return
            after = int(rows[-1][0])  # type: ignore[call-overload]

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._fetch("SELECT payload, signature FROM audit_checkpoints ORDER BY id", ())
        return [Checkpoint(orjson.loads(str(p)), str(s)) for p, s in rows]

    async def seq_bounds(self, since: str | None, until: str | None) -> tuple[int | None, int | None]:
        lo = hi = None
        if since:
            rows = await self._fetch("SELECT MIN(seq) FROM audit_records WHERE time >= ?", (since,))
            lo = int(rows[0][0]) if rows and rows[0][0] is not None else 2**62  # type: ignore[call-overload]
        if until:
            rows = await self._fetch("SELECT MAX(seq) FROM audit_records WHERE time < ?", (until,))
            hi = int(rows[0][0]) if rows and rows[0][0] is not None else 0  # type: ignore[call-overload]
        return lo, hi

    async def previous_of_user(self, user_key: str, before_seq: int) -> StoredRecord | None:
        rows = await self._fetch(
            f"SELECT {_COLS} FROM audit_records WHERE user_key = ? AND seq < ? "
            "ORDER BY seq DESC LIMIT 1", (user_key, before_seq))
        return StoredRecord.from_row(rows[0]) if rows else None

    async def user_heads_at(self, seq: int) -> dict[str, str]:
        rows = await self._fetch(
            "SELECT r.user_key, r.hash FROM audit_records r JOIN (SELECT MAX(seq) AS m FROM "
            "audit_records WHERE user_key IS NOT NULL AND seq <= ? GROUP BY user_key) h "
            "ON r.seq = h.m", (seq,))
        return {str(k): str(h) for k, h in rows}

    async def report(self, q: AuditQuery, by: str) -> list[dict[str, Any]]:
        totals, reasons, params = report_sql(q, by, "sqlite", "audit_records")
        return assemble(by, await self._fetch(totals, params), await self._fetch(reasons, params))

    async def summary(self, q: AuditQuery, bucket: str) -> dict[str, Any]:
        sql, params = summary_sql(q, bucket, "sqlite", "audit_records")
        return summarise(await self._fetch(sql, params))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def open_reader(url: str, *, pg_schema: str = "public") -> AuditReader:
    if url.startswith("sqlite:"):
        return SqliteAuditReader(sqlite_path(url))
    if is_postgres(url):
        from pep.audit.postgres_reader import PostgresAuditReader

        return PostgresAuditReader(url, schema=pg_schema)
    raise ValueError(f"unsupported audit store URL scheme: {url.split('://')[0]!r}")
