"""Read-only access to a PostgreSQL trail (see reader.AuditReader)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson

from pep.audit.checkpoints import Checkpoint
from pep.audit.events import AuditUnavailable
from pep.audit.overview_sql import summarise, summary_sql
from pep.audit.query import AuditQuery
from pep.audit.reader import CHUNK, MAX_SUBJECTS_PER_EMAIL
from pep.audit.records import ALL_COLUMNS, StoredRecord
from pep.audit.report_sql import assemble, report_sql

_COLS = ", ".join(ALL_COLUMNS)


class PostgresAuditReader:
    def __init__(self, dsn: str, *, schema: str = "public") -> None:
        self._dsn = dsn
        self._s = f'"{schema}"'
        self._pool: asyncpg.Pool | None = None

    async def _fetch(self, sql: str, *params: Any) -> list[Any]:
        try:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2,
                                                       command_timeout=60)
            async with self._pool.acquire() as conn:
                return list(await conn.fetch(sql, *params))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise AuditUnavailable(f"audit read failed: {exc}") from exc

    async def records(self, seq_lo: int | None = None, seq_hi: int | None = None) -> AsyncIterator[StoredRecord]:
        # No lower bound by default: a row at a negative seq is streamed too (verify reports it).
        after = (seq_lo - 1) if seq_lo is not None else -(2**62)
        hi = seq_hi if seq_hi is not None else 2**62
        while True:
            rows = await self._fetch(
                f"SELECT {_COLS} FROM {self._s}.audit_records WHERE seq > $1 AND seq <= $2 "
                "ORDER BY seq LIMIT $3", after, hi, CHUNK)
            for row in rows:
                yield StoredRecord.from_row(row)
            if len(rows) < CHUNK:
                return
            after = int(rows[-1]["seq"])

    async def query(self, q: AuditQuery) -> list[StoredRecord]:
        where, params = q.where("postgres")
        order = "DESC" if q.order == "desc" else "ASC"
        rows = await self._fetch(
            f"SELECT {_COLS} FROM {self._s}.audit_records WHERE {where} ORDER BY seq {order} "
            f"LIMIT {int(q.limit or 1000)}", *params)
        return [StoredRecord.from_row(r) for r in rows]

    async def count(self, q: AuditQuery) -> int:
        where, params = q.where("postgres")
        rows = await self._fetch(f"SELECT COUNT(*) AS n FROM {self._s}.audit_records WHERE {where}",
                                 *params)
        return int(rows[0]["n"])

    async def subjects_with_email(self, email: str) -> list[str]:
        found: list[str] = []
        while len(found) < MAX_SUBJECTS_PER_EMAIL:
            rows = await self._fetch(
                f"SELECT subject FROM {self._s}.audit_records WHERE email = $1 AND subject > $2 "
                "ORDER BY subject LIMIT 1", email, found[-1] if found else "")
            if not rows:
                break
            found.append(str(rows[0]["subject"]))
        return found

    async def matching(self, q: AuditQuery) -> AsyncIterator[StoredRecord]:
        where, params = q.where("postgres")
        n = len(params)
        after = -1
        while True:
            rows = await self._fetch(
                f"SELECT {_COLS} FROM {self._s}.audit_records WHERE {where} AND seq > ${n + 1} "
                f"ORDER BY seq LIMIT ${n + 2}", *params, after, CHUNK)
            for row in rows:
                yield StoredRecord.from_row(row)
            if len(rows) < CHUNK:
                return
            after = int(rows[-1]["seq"])

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._fetch(f"SELECT payload, signature FROM {self._s}.audit_checkpoints ORDER BY id")
        return [Checkpoint(orjson.loads(r["payload"]), r["signature"]) for r in rows]

    async def seq_bounds(self, since: str | None, until: str | None) -> tuple[int | None, int | None]:
        lo = hi = None
        if since:
            v = (await self._fetch(f"SELECT MIN(seq) AS v FROM {self._s}.audit_records WHERE time >= $1", since))[0]["v"]
            lo = int(v) if v is not None else 2**62
        if until:
            v = (await self._fetch(f"SELECT MAX(seq) AS v FROM {self._s}.audit_records WHERE time < $1", until))[0]["v"]
            hi = int(v) if v is not None else 0
        return lo, hi

    async def previous_of_user(self, user_key: str, before_seq: int) -> StoredRecord | None:
        rows = await self._fetch(
            f"SELECT {_COLS} FROM {self._s}.audit_records WHERE user_key = $1 AND seq < $2 "
            "ORDER BY seq DESC LIMIT 1", user_key, before_seq)
        return StoredRecord.from_row(rows[0]) if rows else None

    async def user_heads_at(self, seq: int) -> dict[str, str]:
        rows = await self._fetch(
            f"SELECT DISTINCT ON (user_key) user_key, hash FROM {self._s}.audit_records "
            "WHERE user_key IS NOT NULL AND seq <= $1 ORDER BY user_key, seq DESC", seq)
        return {str(r["user_key"]): str(r["hash"]) for r in rows}

    async def report(self, q: AuditQuery, by: str) -> list[dict[str, Any]]:
        totals, reasons, params = report_sql(q, by, "postgres", f"{self._s}.audit_records")
        return assemble(by, [tuple(r) for r in await self._fetch(totals, *params)],
                        [tuple(r) for r in await self._fetch(reasons, *params)])

    async def summary(self, q: AuditQuery, bucket: str) -> dict[str, Any]:
        sql, params = summary_sql(q, bucket, "postgres", f"{self._s}.audit_records")
        return summarise([tuple(r) for r in await self._fetch(sql, *params)])

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
