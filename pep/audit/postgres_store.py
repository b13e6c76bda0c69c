"""PostgreSQL audit store (asyncpg): several gateway replicas append to ONE trail.

How the chains work across replicas: there is a single global chain. Each replica batches its
own concurrent appends (group commit) and writes a batch in one transaction that first takes
the row lock on ``audit_head`` (``SELECT ... FOR UPDATE``). Holding it, the replica reads the
head (seq, hash), the per-user heads of the subjects in the batch (``audit_user_heads``),
links the batch, inserts it, updates both heads and commits. The lock is held for one batch
insert, so replicas interleave batch by batch and the trail is one linear chain that the same
offline verifier checks. Commits use ``synchronous_commit=on``: an append returns only when
PostgreSQL has flushed the commit.

Checkpoints are written under the same lock (the head row carries the hash of the latest
checkpoint and the count since it), so they form one chain too. Every replica that signs must
use the same ``signing_key`` file or the verifier must be given each replica's public key.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import orjson

from pep.audit.checkpoints import Checkpoint, Signer
from pep.audit.events import AuditEvent, AuditUnavailable
from pep.audit.lifecycle import aborted_event, outage_event
from pep.audit.postgres_schema import INDEX_NAMES, ddl
from pep.audit.records import (
    ALL_COLUMNS,
    ChainHead,
    LinkedRecord,
    StoredRecord,
    canonical_json,
    event_body,
    user_key_of,
)
from pep.audit.sqlite_store import WriterStats
from pep.audit.timefmt import now_rfc3339
from pep.audit.witness import Witness, WitnessConfig

log = logging.getLogger("regogate.audit")

# The SQL type of each of ALL_COLUMNS, for the batch insert (one array parameter per column).
_COLUMN_TYPES = {"seq": "bigint", "status": "integer", "tokens_in": "bigint",
                 "tokens_out": "bigint", "cost_usd": "double precision"}


def head_sql(s: str) -> str:
    """The chain head and the current heads of the given subjects, in one snapshot."""
    return (f"SELECT seq, hash, since_checkpoint, last_checkpoint, (SELECT json_object_agg("
            f"user_key, hash) FROM {s}.audit_user_heads WHERE user_key = ANY($1::text[]))"
            f" AS user_heads FROM {s}.audit_head WHERE id = 1")


def _unnest_records(s: str, where: str) -> str:
    arrays = ", ".join(f"${i + 1}::{_COLUMN_TYPES.get(c, 'text')}[]"
                       for i, c in enumerate(ALL_COLUMNS))
    return (f"INSERT INTO {s}.audit_records ({', '.join(ALL_COLUMNS)}) "
            f"SELECT * FROM unnest({arrays}){where}")


def optimistic_sql(s: str) -> str:
    """One autocommitted statement: advance the head from (old seq, old hash) -- re-checked on
    the latest row version if another writer holds or just released it -- and insert the
    records and user heads only if that happened. Returns 1 if appended, 0 if the head had
    moved. ``since_checkpoint`` is incremented, not set, so a checkpoint written meanwhile
    (which moves neither seq nor hash) is kept. Parameters: the columns, user keys, their
    hashes, new seq, new hash, record count, old seq, old hash."""
    n = len(ALL_COLUMNS)
    moved = " WHERE EXISTS (SELECT 1 FROM head)"
    return (
        f"WITH head AS (UPDATE {s}.audit_head SET seq = ${n + 3}, hash = ${n + 4}, "
        f"since_checkpoint = since_checkpoint + ${n + 5} "
        f"WHERE id = 1 AND seq = ${n + 6} AND hash = ${n + 7} RETURNING 1), "
        f"records AS ({_unnest_records(s, moved)}), "
        f"heads AS (INSERT INTO {s}.audit_user_heads (user_key, hash) "
        f"SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::text[]){moved} "
        "ON CONFLICT (user_key) DO UPDATE SET hash = EXCLUDED.hash) "
        "SELECT count(*) FROM head"
    )


def batch_sql(s: str) -> str:
    """The batch under the head's row lock: the records, the subjects' new heads and the
    chain head. Parameters: one array per column of ALL_COLUMNS, the user keys and their
    hashes, then the head's seq, hash, records since the last checkpoint and its hash."""
    n = len(ALL_COLUMNS)
    return (
        f"WITH records AS ({_unnest_records(s, '')}), "
        f"heads AS (INSERT INTO {s}.audit_user_heads (user_key, hash) "
        f"SELECT * FROM unnest(${n + 1}::text[], ${n + 2}::text[]) "
        "ON CONFLICT (user_key) DO UPDATE SET hash = EXCLUDED.hash) "
        f"UPDATE {s}.audit_head SET seq = ${n + 3}, hash = ${n + 4}, "
        f"since_checkpoint = ${n + 5}, last_checkpoint = ${n + 6} WHERE id = 1"
    )


class PostgresAuditStore:
    def __init__(
        self,
        dsn: str,
        signer: Signer,
        *,
        schema: str = "public",
        checkpoint_every_records: int = 1000,
        checkpoint_every_s: float = 30.0,
        seal_idle_s: float = 1.0,
        witness: Witness | None = None,
        max_batch: int = 512,
        write_timeout_s: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._signer = signer
        self._schema = schema
        self._s = f'"{schema}"'
        self._cp_every_records = checkpoint_every_records
        self._cp_every_s = checkpoint_every_s
        self._seal_idle_s = min(seal_idle_s, checkpoint_every_s)
        self.witness = witness or Witness(WitnessConfig())
        self._live: asyncpg.Connection | None = None
        self._outage: dict[str, Any] | None = None
        self._last_write = 0.0
        # One batch transaction at a time from this replica (the writer and the /readyz probe).
        self._write_lock = asyncio.Lock()
        self._unsealed = False
        self.orphans_closed = 0
        self._max_batch = max_batch
        self._timeout = write_timeout_s
        self._pool: asyncpg.Pool | None = None
        self._wconn: asyncpg.Connection | None = None
        self._batch_sql = batch_sql(self._s)
        self._optimistic_sql = optimistic_sql(self._s)
        self._head_sql = head_sql(self._s)
        self.stale_heads = 0  # optimistic appends that found the head moved (then locked)
        self._pending: list[tuple[bytes, dict[str, Any], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._running = False
        self._last_error: str | None = None
        self.stats = WriterStats()

    async def start(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=3, command_timeout=self._timeout,
                server_settings={"synchronous_commit": "on", "application_name": "regogate-audit"},
            )
            async with self._pool.acquire() as conn:
                if not await self._schema_current(conn):
                    async with conn.transaction():
                        # Replicas starting together must not race on CREATE ... IF NOT EXISTS.
                        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                           f"regogate-audit:{self._schema}")
                        for stmt in ddl(self._schema):
                            await conn.execute(stmt)
            await self._recover()
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._close_connections()
            raise AuditUnavailable(f"cannot open PostgreSQL audit store: {exc}") from exc
        self.witness.start()
        self._running = True
        self._writer = asyncio.create_task(self._write_loop(), name="regogate-audit-writer")
        try:
            await self._checkpoint("start")
        except AuditUnavailable as exc:
            self._failed(str(exc), 0)
            log.error("start checkpoint failed: %s", exc)

    async def _schema_current(self, conn: asyncpg.Connection) -> bool:
        """Whether the last DDL step has run (the DDL is one transaction, in order). Read from
        the catalogue, which takes no table lock: a worker or replica (re)starting while others
        append must not run the DDL, whose no-op ``CREATE INDEX`` / ``ALTER TABLE ... IF NOT
        EXISTS`` still take strong locks (on the records, then the head) in the opposite order
        to an append (head, then records) and deadlocked with it."""
        found = await conn.fetchval(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) "
            "AND attname = 'recovered_seq' AND NOT attisdropped", f"{self._s}.audit_head")
        if not found:
            return False
        # Indexes added after that column (the auditor workspace's) come with an upgrade too.
        indexes = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = ANY($2)",
            self._schema, list(INDEX_NAMES))
        return bool(indexes == len(INDEX_NAMES))

    async def _close_connections(self) -> None:
        if self._wconn is not None:
            await self._wconn.close()
            self._wconn = None
        if self._live is not None:
            await self._live.close()
            self._live = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _recover(self) -> None:
        """Close orphan intents (``request.aborted``) when no other replica is alive.

        Every running replica holds a shared advisory lock on one liveness connection. A
        starting replica that gets the lock *exclusively* knows every other writer is gone, so
        any intent without a terminal record was left by a crash and is closed. With another
        replica running, its in-flight requests are indistinguishable from orphans; those are
        then closed at the next start that finds the trail alone."""
        self._live = await asyncpg.connect(self._dsn, timeout=self._timeout)
        key = f"regogate-audit-live:{self._schema}"
        alone = await self._live.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key)
        await self._live.execute("SELECT pg_advisory_lock_shared(hashtext($1))", key)
        if not alone:
            return
        try:
            s = self._s
            since = await self._live.fetchval(f"SELECT recovered_seq FROM {s}.audit_head WHERE id = 1")
            rows = await self._live.fetch(
                f"SELECT i.seq, i.body FROM {s}.audit_records i WHERE i.seq > $1 "
                "AND i.event = 'request.intent' AND NOT EXISTS (SELECT 1 FROM "
                f"{s}.audit_records t WHERE t.request_id = i.request_id AND t.seq > i.seq) "
                "ORDER BY i.seq", int(since or 0))
            if rows:
                now = now_rfc3339()
                docs = [aborted_event(orjson.loads(r["body"]), int(r["seq"]), now) for r in rows]
                loop = asyncio.get_running_loop()
                batch = [(canonical_json(d), d, loop.create_future()) for d in docs]
                await self._write(batch)
                for *_, fut in batch:
                    await fut  # raises AuditUnavailable if the batch failed
                self.orphans_closed = len(docs)
                log.warning("closed %d request(s) left open by an unclean shutdown", len(docs))
            await self._live.execute(
                f"UPDATE {s}.audit_head SET recovered_seq = seq WHERE id = 1")
        finally:
            await self._live.execute("SELECT pg_advisory_unlock(hashtext($1))", key)

    async def close(self) -> None:
        if not self._running:
            return
        self._running = False
        self._wake.set()
        if self._writer is not None:
            await self._writer
        try:
            await asyncio.wait_for(self._checkpoint("close"), self._timeout)
        except (TimeoutError, AuditUnavailable) as exc:
            log.error("final audit checkpoint failed: %s", exc)
        await asyncio.to_thread(self.witness.close)
        await self._close_connections()

    async def append(self, event: AuditEvent | dict[str, Any]) -> None:
        if not self._running:
            raise AuditUnavailable("audit store is not running")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        body, doc = event_body(event)
        self._pending.append((body, doc, fut))
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(fut), self._timeout)
        except TimeoutError as exc:
            raise AuditUnavailable(f"audit record not durable within {self._timeout}s") from exc

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"store": "postgresql", "schema": self._schema}
        if not self._running or self._pool is None or self._writer is None or self._writer.done():
            return False, {**detail, "error": "not running"}
        if self._last_error is not None:
            # The last write failed: only a real commit (the outage record) says it is back.
            await self._write([])
            if self._last_error is not None:
                return False, {**detail, "error": f"audit store not writable: {self._last_error}"}
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                seq = await conn.fetchval(f"SELECT seq FROM {self._s}.audit_head WHERE id = 1")
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            return False, {**detail, "error": f"database not reachable: {exc}"}
        return True, {**detail, "seq": seq}

    async def checkpoint_now(self) -> None:
        await self._checkpoint("checkpoint")

    # -- writer ------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_cp = loop.time() + self._cp_every_s
        while self._running or self._pending:
            now = loop.time()
            # Periodic seal (heartbeat when idle, also under constant load) and a seal soon
            # after a burst ends, so the unsealed tail stays short.
            due = min(next_cp, self._last_write + self._seal_idle_s) if self._unsealed else next_cp
            if now >= due:
                await self._periodic_checkpoint()
                # After a failed seal retry on the idle timer, not in a spin.
                self._last_write = loop.time()
                next_cp = self._last_write + self._cp_every_s
                continue
            if not self._pending:
                try:
                    await asyncio.wait_for(self._wake.wait(), due - now)
                except TimeoutError:
                    continue
                self._wake.clear()
                continue
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            await self._write(batch)
            self._last_write = loop.time()

    async def _periodic_checkpoint(self) -> None:
        try:
            await self._checkpoint(None)
        except AuditUnavailable as exc:
            self._failed(str(exc), 0)
            log.error("periodic audit checkpoint failed: %s", exc)

    def _failed(self, error: str, records: int) -> None:
        self._last_error = error
        if self._outage is None:
            self._outage = {"from": now_rfc3339(), "failed_records": 0, "error": error}
        self._outage["failed_records"] += records
        self._outage["error"] = error

    async def _all_user_heads(self, conn: asyncpg.Connection) -> dict[str, str]:
        rows = await conn.fetch(f"SELECT user_key, hash FROM {self._s}.audit_user_heads")
        return {r["user_key"]: r["hash"] for r in rows}

    async def _write(self, batch: list[tuple[bytes, dict[str, Any], asyncio.Future[None]]]) -> None:
        async with self._write_lock:
            await self._write_locked(batch)

    async def _writer_conn(self) -> asyncpg.Connection:
        """The writer's own connection: held across batches (a pool checkout costs a reset
        round trip on every release), replaced after any failure."""
        if self._wconn is None or self._wconn.is_closed():
            self._wconn = await asyncpg.connect(
                self._dsn, timeout=self._timeout, command_timeout=self._timeout,
                server_settings={"synchronous_commit": "on",
                                 "application_name": "regogate-audit-writer"})
        return self._wconn

    async def _drop_writer_conn(self) -> None:
        conn, self._wconn = self._wconn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # an open transaction is rolled back by the server

    async def _write_locked(
        self, batch: list[tuple[bytes, dict[str, Any], asyncio.Future[None]]]
    ) -> None:
        cp: Checkpoint | None = None
        items = [(b, d) for b, d, _ in batch]
        if self._outage is not None:
            doc = outage_event(self._outage, now_rfc3339())
            items.insert(0, (canonical_json(doc), doc))
        if not items:
            return
        try:
            conn = await self._writer_conn()
            records, cp = await self._append_optimistic(conn, items)
            if not records:
                records, cp = await self._append_under_lock(conn, items)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._drop_writer_conn()
            self.stats.failures += 1
            self._failed(str(exc), len(batch))
            log.error("audit batch of %d records failed: %s", len(batch), exc)
            err = AuditUnavailable(f"audit write failed: {exc}")
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        except BaseException:
            await self._drop_writer_conn()  # cancelled mid-batch: never leave it half open
            raise
        self._last_error = None
        self._outage = None
        self._unsealed = cp is None
        self.stats.transactions += 1
        self.stats.records += len(records)
        self.stats.largest_batch = max(self.stats.largest_batch, len(records))
        for _, _, fut in batch:
            if not fut.done():
                fut.set_result(None)
        if cp is not None:
            self._copy_out(cp)

    async def _append_optimistic(
        self, conn: asyncpg.Connection, items: list[tuple[bytes, dict[str, Any]]]
    ) -> tuple[list[LinkedRecord], None]:
        """Two round trips, no lock held between them: read the head and the batch's user
        heads (one statement, one snapshot), link, then one autocommitted statement that
        advances the head only if it is still the one read and inserts the records and user
        heads only if it did. Any other writer's append moves the head (user heads only move
        with it), so a stale read inserts nothing and this returns ``[]``: the caller then
        appends under the lock. A batch that reaches the count checkpoint also goes there."""
        keys = sorted({k for k in (user_key_of(d) for _, d in items) if k})
        row = await conn.fetchrow(self._head_sql, keys)
        head = ChainHead(int(row["seq"]), str(row["hash"]))
        if row["since_checkpoint"] + len(items) >= self._cp_every_records:
            return [], None
        if row["user_heads"]:
            head.user_heads = orjson.loads(row["user_heads"])
        records, updates = head.link_batch(items, lambda _k: None)
        columns = [list(c) for c in zip(*(r.row() for r in records), strict=True)]
        done = await conn.fetchval(self._optimistic_sql, *columns, list(updates),
                                   list(updates.values()), records[-1].seq, records[-1].hash,
                                   len(records), head.seq, head.head)
        if not done:
            self.stale_heads += 1
            return [], None
        return records, None

    async def _append_under_lock(
        self, conn: asyncpg.Connection, items: list[tuple[bytes, dict[str, Any]]]
    ) -> tuple[list[LinkedRecord], Checkpoint | None]:
        """Four round trips: BEGIN + the head's row lock (one simple query), the head and the
        user heads read after the lock (what the last holder committed), one statement
        inserting records and user heads and advancing the head, and COMMIT
        (synchronous_commit=on: flushed before anyone is told). Signs the count checkpoint
        when this batch reaches it."""
        s = self._s
        cp: Checkpoint | None = None
        await conn.execute(f"BEGIN; SELECT 1 FROM {s}.audit_head WHERE id = 1 FOR UPDATE")
        keys = sorted({k for k in (user_key_of(d) for _, d in items) if k})
        head_row = await conn.fetchrow(self._head_sql, keys)
        head = ChainHead(int(head_row["seq"]), str(head_row["hash"]))
        if head_row["user_heads"]:
            head.user_heads = orjson.loads(head_row["user_heads"])
        records, updates = head.link_batch(items, lambda _k: None)
        since = int(head_row["since_checkpoint"]) + len(records)
        last_cp = head_row["last_checkpoint"]
        columns = [list(c) for c in zip(*(r.row() for r in records), strict=True)]
        await conn.execute(self._batch_sql, *columns, list(updates), list(updates.values()),
                           records[-1].seq, records[-1].hash, since, last_cp)
        if since >= self._cp_every_records:
            cp = self._signer.sign(kind="checkpoint", seq=records[-1].seq,
                                   head=records[-1].hash, prev_checkpoint=last_cp,
                                   time=now_rfc3339(), interval_s=self._cp_every_s,
                                   user_heads=await self._all_user_heads(conn))
            await self._insert_checkpoint(conn, cp)
            await conn.execute(f"UPDATE {s}.audit_head SET since_checkpoint = 0, "
                               "last_checkpoint = $1 WHERE id = 1", cp.hash)
        await conn.execute("COMMIT")
        return records, cp

    async def _insert_checkpoint(self, conn: asyncpg.Connection, cp: Checkpoint) -> None:
        await conn.execute(
            f"INSERT INTO {self._s}.audit_checkpoints (seq, time, kind, payload, signature, hash) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            cp.seq, cp.payload["time"], cp.payload["kind"], orjson.dumps(cp.payload).decode(),
            cp.signature, cp.hash,
        )

    async def _checkpoint(self, kind: str | None) -> None:
        """Seal the shared head. ``kind`` None: checkpoint if records arrived, else heartbeat."""
        if self._pool is None:
            raise AuditUnavailable("audit store is not running")
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn, conn.transaction():
                row = await conn.fetchrow(
                    f"SELECT seq, hash, since_checkpoint, last_checkpoint FROM {self._s}.audit_head "
                    "WHERE id = 1 FOR UPDATE"
                )
                k = kind or ("checkpoint" if row["since_checkpoint"] else "heartbeat")
                cp = self._signer.sign(kind=k, seq=int(row["seq"]), head=str(row["hash"]),
                                       prev_checkpoint=row["last_checkpoint"], time=now_rfc3339(),
                                       interval_s=self._cp_every_s,
                                       user_heads=await self._all_user_heads(conn))
                await self._insert_checkpoint(conn, cp)
                await conn.execute(
                    f"UPDATE {self._s}.audit_head SET since_checkpoint = 0, last_checkpoint = $1 "
                    "WHERE id = 1", cp.hash,
                )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise AuditUnavailable(f"checkpoint failed: {exc}") from exc
        self._unsealed = False
        self._copy_out(cp)

    def _copy_out(self, cp: Checkpoint) -> None:
        self.witness.publish(cp)



__all__ = ["PostgresAuditStore", "StoredRecord"]
