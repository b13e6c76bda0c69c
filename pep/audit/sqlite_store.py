"""The embedded audit store: SQLite in WAL mode, one writer thread, durable group commit.

Appends from the event loop go onto a queue; the writer thread takes everything queued (up to
``max_batch``) and writes it in ONE transaction, then resolves each append's future. While a
commit (and its fsync) is in flight, new appends queue up and go together in the next one, so
under load the fsync cost is shared and no request is acknowledged before its record is on
disk.

Durability: ``journal_mode=WAL`` + ``synchronous=FULL``. In WAL mode NORMAL only fsyncs at WAL
checkpoints, so a power loss can drop the last commits even though the writer already
acknowledged them; that would break "no durable intent, no provider call". FULL fsyncs the WAL
on every commit, and group commit pays for it once per batch, not once per request.

One writer process per database file: an exclusive ``flock`` on ``<db>.lock`` makes a second
gateway on the same file fail at start instead of forking the chain.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import functools
import itertools
import logging
import os
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pep.audit.checkpoints import Checkpoint, Signer
from pep.audit.events import AuditEvent, AuditUnavailable
from pep.audit.lifecycle import aborted_event, outage_event
from pep.audit.records import ALL_COLUMNS, ChainHead, StoredRecord, canonical_json, event_body
from pep.audit.sqlite_schema import ORPHANS_SQL, SCHEMA, insert_checkpoint_sql
from pep.audit.timefmt import now_rfc3339
from pep.audit.witness import Witness, WitnessConfig

log = logging.getLogger("regogate.audit")

# Rows per INSERT statement. One multi-row INSERT instead of ``executemany`` (one statement
# execution per row): SQLite opens the table's and its nine indexes' cursors and halts the
# statement once per statement, not once per row, ≈ 28k of ≈ 89k instructions per record
# (docs/performance.md). 32 rows x 21 columns = 672 parameters, under the 999 that SQLite
# builds before 3.32 allow; at most 32 statement texts, each prepared once.
# ``OR ROLLBACK``: a statement of several rows that may abort half-way needs a statement
# journal (a temp file: ≈ 1 open and 11 more writes per commit); any failure here ends the
# whole batch anyway (``_write`` rolls back and fails every record of it), so a constraint
# failure rolling back the transaction at once changes nothing and needs no journal.
INSERT_ROWS = 32

_CLOSE = object()
_PROBE = object()
_CHECKPOINT = object()


@dataclass
class WriterStats:
    transactions: int = 0
    records: int = 0
    largest_batch: int = 0
    failures: int = 0


class SqliteAuditStore:
    def __init__(
        self,
        path: Path,
        signer: Signer,
        *,
        checkpoint_every_records: int = 1000,
        checkpoint_every_s: float = 30.0,
        seal_idle_s: float = 1.0,
        witness: Witness | None = None,
        max_batch: int = 512,
        write_timeout_s: float = 5.0,
        commit_window_s: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self._signer = signer
        self._cp_every_records = checkpoint_every_records
        self._cp_every_s = checkpoint_every_s
        self._seal_idle_s = min(seal_idle_s, checkpoint_every_s)
        self.witness = witness or Witness(WitnessConfig())
        self._max_batch = max_batch
        self._timeout = write_timeout_s
        self._window = commit_window_s
        self._last_batch = 0  # records in the previous commit: >1 means concurrency
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = False
        self._head = ChainHead()
        self._since_cp = 0
        self._last_cp: Checkpoint | None = None
        self._last_error: str | None = None
        # An outage in progress: {"from", "failed_records", "error"}; its audit.outage record
        # is committed with the first batch that succeeds afterwards.
        self._outage: dict[str, Any] | None = None
        self.orphans_closed = 0
        self._lock_fd: int | None = None
        # (deadline, future) in enqueue order; one watchdog task fails the overdue ones, which
        # is far cheaper than a timer per append (wait_for) on the request path.
        self._deadlines: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._watchdog: asyncio.Task[None] | None = None
        self.stats = WriterStats()

    # -- event-loop side ---------------------------------------------------------------

    async def start(self) -> None:
        self.witness.start()
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="regogate-audit-writer", daemon=True
        )
        self._thread.start()
        await ready
        self._running = True
        self._watchdog = asyncio.create_task(self._watch(), name="regogate-audit-watchdog")

    async def _watch(self) -> None:
        period = min(1.0, self._timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            dq = self._deadlines
            while dq and (dq[0][1].done() or dq[0][0] <= now):
                _, fut = dq.popleft()
                if not fut.done():
                    fut.set_exception(
                        AuditUnavailable(f"audit record not durable within {self._timeout}s"))

    async def close(self) -> None:
        if not self._running or self._loop is None:
            return
        self._running = False
        done: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((_CLOSE, done))
        await done
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self.witness.close)

    async def append(self, event: AuditEvent | dict[str, Any]) -> None:
        if not self._running or self._loop is None:
            raise AuditUnavailable("audit store is not running")
        body, doc = event_body(event)
        fut: asyncio.Future[None] = self._loop.create_future()
        self._deadlines.append((time.monotonic() + self._timeout, fut))
        self._queue.put((body, doc, fut))
        # Awaited directly, not through asyncio.shield (≈ 6 µs per append): a cancelled request
        # cancels this future too, the writer then skips it (it resolves only futures not yet
        # done) and the record is written all the same (tests/audit/test_sqlite_store.py).
        await fut

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"store": "sqlite", "path": str(self.path)}
        if not self._running or self._loop is None:
            return False, {**detail, "error": "not running"}
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((_PROBE, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), self._timeout)
        except (TimeoutError, AuditUnavailable) as exc:
            return False, {**detail, "error": str(exc) or "write probe timed out"}
        return True, {**detail, "seq": self._head.seq}

    async def checkpoint_now(self) -> None:
        """Seal the current head immediately (tests, admin tooling)."""
        if not self._running or self._loop is None:
            raise AuditUnavailable("audit store is not running")
        fut: asyncio.Future[None] = self._loop.create_future()
        self._queue.put((_CHECKPOINT, fut))
        await fut

    # -- writer thread -----------------------------------------------------------------

    def _resolve(self, fut: asyncio.Future[None], exc: BaseException | None) -> None:
        self._resolve_all([fut], exc)

    def _resolve_all(self, futs: list[asyncio.Future[None]], exc: BaseException | None) -> None:
        """One wake-up of the event loop per batch, not per record."""

        def apply() -> None:
            for fut in futs:
                if fut.done():
                    continue
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

        assert self._loop is not None
        self._loop.call_soon_threadsafe(apply)

    def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = self._open()
            self._recover(conn)
        except Exception as exc:  # noqa: BLE001 -- reported to start() as AuditUnavailable
            self._release_lock()
            self._resolve(ready, AuditUnavailable(f"cannot open audit database {self.path}: {exc}"))
            return
        self._resolve(ready, None)
        next_cp = time.monotonic() + self._cp_every_s
        last_write = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                # Seal on the periodic timer (heartbeat when idle, also under constant load)
                # and soon after a burst ends (idle timer), so the unsealed tail stays short.
                due = next_cp if not self._since_cp else min(next_cp, last_write + self._seal_idle_s)
                if now >= due:
                    self._checkpoint(conn, "checkpoint" if self._since_cp else "heartbeat")
                    # After a failed seal (disk full) retry on the idle timer, not in a spin.
                    next_cp = last_write = time.monotonic()
                    next_cp += self._cp_every_s
                    continue
                try:
                    first = self._queue.get(timeout=due - now)
                except queue.Empty:
                    continue
                batch, controls = self._drain(first)
                if batch:
                    self._write(conn, batch)
                    last_write = time.monotonic()
                for kind, fut in controls:
                    if kind is _PROBE:
                        self._resolve(fut, self._probe(conn))
                    elif kind is _CHECKPOINT:
                        err = self._checkpoint(conn, "checkpoint" if self._since_cp else "heartbeat")
                        self._resolve(fut, err)
                        next_cp = time.monotonic() + self._cp_every_s
                    elif kind is _CLOSE:
                        self._checkpoint(conn, "close")
                        self._fail_pending()
                        conn.close()
                        self._release_lock()
                        self._resolve(fut, None)
                        return
        except BaseException:  # the writer must never die silently with futures pending
            log.exception("audit writer thread crashed")
            self._running = False
            self._fail_pending()
            raise

    def _recover(self, conn: sqlite3.Connection) -> None:
        """At start: close the previous run's orphan intents (a crash left them without a
        terminal record) with ``request.aborted``, then sign a ``start`` checkpoint."""
        row = conn.execute("SELECT MAX(seq) FROM audit_checkpoints WHERE kind = 'start'").fetchone()
        since = int(row[0]) if row and row[0] is not None else 0
        orphans = conn.execute(ORPHANS_SQL, (since,)).fetchall()
        if orphans:
            now = now_rfc3339()
            docs = [aborted_event(orjson.loads(body), int(seq), now) for seq, body in orphans]
            self._write(conn, [(canonical_json(d), d, None) for d in docs])
            if self._last_error is not None:
                raise AuditUnavailable(f"cannot close orphan intents: {self._last_error}")
            self.orphans_closed = len(docs)
            log.warning("closed %d request(s) left open by an unclean shutdown", len(docs))
        if self._checkpoint(conn, "start") is not None:
            raise AuditUnavailable(f"cannot write the start checkpoint: {self._last_error}")

    def _drain(self, first: Any) -> tuple[list[Any], list[Any]]:
        batch: list[Any] = []
        controls: list[Any] = []
        deadline: float | None = None
        item = first
        while True:
            if isinstance(item[0], bytes):
                batch.append(item)
            else:
                controls.append(item)
                if item[0] is _CLOSE:
                    break
            if len(batch) >= self._max_batch:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                if controls or not self._window_open(batch):
                    break
                # Group-commit window: under concurrency, more records are about to arrive;
                # waiting for them shares this commit's fsync. Waiting only delays the
                # acknowledgement (nothing is resolved before the commit).
                if deadline is None:
                    deadline = time.monotonic() + self._window
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
        self._last_batch = len(batch)
        return batch, controls

    def _window_open(self, batch: list[Any]) -> bool:
        return self._window > 0 and bool(batch) and self._last_batch > 1

    def _fail_pending(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item[-1] is not None:
                self._resolve(item[-1], AuditUnavailable("audit store is shutting down"))

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise AuditUnavailable("another gateway process is writing this audit database") from exc
        self._lock_fd = fd
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        row = conn.execute("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            self._head = ChainHead(int(row[0]), str(row[1]))
        # Every subject's head, so each checkpoint can commit to all of them (users_root).
        self._head.user_heads = dict(conn.execute(
            "SELECT r.user_key, r.hash FROM audit_records r JOIN (SELECT MAX(seq) AS m "
            "FROM audit_records WHERE user_key IS NOT NULL GROUP BY user_key) h ON r.seq = h.m"
        ).fetchall())
        cp = conn.execute(
            "SELECT payload, signature FROM audit_checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if cp is not None:
            self._last_cp = Checkpoint(orjson.loads(cp[0]), cp[1])
            self._since_cp = self._head.seq - self._last_cp.seq
        else:
            self._since_cp = self._head.seq
        return conn

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _user_head(self, conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute(
            "SELECT hash FROM audit_records WHERE user_key = ? ORDER BY seq DESC LIMIT 1", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _write(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        """``batch``: (body, doc, future | None) triples, in arrival order."""
        cp: Checkpoint | None = None
        futs = [item[2] for item in batch if item[2] is not None]
        items = [(item[0], item[1]) for item in batch]
        if self._outage is not None:
            doc = outage_event(self._outage, now_rfc3339())
            items.insert(0, (canonical_json(doc), doc))
        try:
            records, updates = self._head.link_batch(items, lambda k: self._user_head(conn, k))
            if not records:
                return
            conn.execute("BEGIN IMMEDIATE")
            rows = [r.row() for r in records]
            for i in range(0, len(rows), INSERT_ROWS):
                chunk = rows[i:i + INSERT_ROWS]
                conn.execute(insert_rows_sql(len(chunk)), list(itertools.chain.from_iterable(chunk)))
            if records and self._since_cp + len(records) >= self._cp_every_records:
                cp = self._sign("checkpoint", records[-1].seq, records[-1].hash,
                                {**self._head.user_heads, **updates})
                conn.execute(insert_checkpoint_sql(), _cp_row(cp))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 -- any failure means "not durable"
            self._rollback(conn)
            self.stats.failures += 1
            self._failed(str(exc), len(batch))
            log.error("audit batch of %d records failed: %s", len(batch), exc)
            self._resolve_all(futs, AuditUnavailable(f"audit write failed: {exc}"))
            return
        self._last_error = None
        self._outage = None
        self._head.advance(records, updates)
        self.stats.transactions += 1
        self.stats.records += len(records)
        self.stats.largest_batch = max(self.stats.largest_batch, len(records))
        self._since_cp += len(records)
        self._resolve_all(futs, None)
        if cp is not None:
            self._sealed(cp)

    def _failed(self, error: str, records: int) -> None:
        self._last_error = error
        if self._outage is None:
            self._outage = {"from": now_rfc3339(), "failed_records": 0, "error": error}
        self._outage["failed_records"] += records
        self._outage["error"] = error

    def _sign(self, kind: str, seq: int, head: str, user_heads: dict[str, str]) -> Checkpoint:
        prev = self._last_cp.hash if self._last_cp is not None else None
        return self._signer.sign(kind=kind, seq=seq, head=head, prev_checkpoint=prev,
                                 time=now_rfc3339(), interval_s=self._cp_every_s,
                                 user_heads=user_heads)

    def _sealed(self, cp: Checkpoint) -> None:
        self._last_cp = cp
        self._since_cp = 0
        self.witness.publish(cp)

    def _checkpoint(self, conn: sqlite3.Connection, kind: str) -> AuditUnavailable | None:
        cp = self._sign(kind, self._head.seq, self._head.head, self._head.user_heads)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert_checkpoint_sql(), _cp_row(cp))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._failed(str(exc), 0)
            log.error("audit checkpoint failed: %s", exc)
            return AuditUnavailable(f"checkpoint failed: {exc}")
        self._sealed(cp)
        return None

    def _probe(self, conn: sqlite3.Connection) -> AuditUnavailable | None:
        if self._last_error is not None:
            # The last write failed (disk full, locked, I/O error): only a real commit tells
            # whether the store is back; the outage record is that commit.
            self._write(conn, [])
            if self._last_error is not None:
                return AuditUnavailable(f"audit database not writable: {self._last_error}")
            return None
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            self._rollback(conn)
            return AuditUnavailable(f"audit database not writable: {exc}")
        return None

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


@functools.cache
def insert_rows_sql(n: int) -> str:
    """``INSERT OR ROLLBACK INTO audit_records (ALL_COLUMNS) VALUES (...), ...``: ``n`` rows,
    in order."""
    row = "(" + ", ".join("?" for _ in ALL_COLUMNS) + ")"
    return (f"INSERT OR ROLLBACK INTO audit_records ({', '.join(ALL_COLUMNS)}) VALUES "
            + ", ".join([row] * n))


def _cp_row(cp: Checkpoint) -> tuple[Any, ...]:
    return (cp.seq, cp.payload["time"], cp.payload["kind"], orjson.dumps(cp.payload).decode(),
            cp.signature, cp.hash)


__all__ = ["ALL_COLUMNS", "SqliteAuditStore", "StoredRecord", "WriterStats"]
