"""Stored responses for the Responses API (``previous_response_id``, ``GET``/``DELETE``
``/v1/responses/{id}``, ``/input_items``), owned by the user who created them.

A stored response is one JSON document keyed by its id and its owner (``issuer`` + ``sub``
of the verified token): a lookup by anyone else finds nothing, exactly like an id that never
existed, so the API answers 404 and does not reveal that the id is someone else's
(GUIDE.md 3.16). The document holds the response object, the conversation up to and
including it in canonical form (what the next turn sends to the provider), its input items
and the chain length the policy sees.

Stores: SQLite under the data dir (default), PostgreSQL (shared by replicas), memory (tests,
single process), or off. Entries expire after ``retention_s``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Annotated, Any, Protocol

import orjson
from pydantic import AfterValidator, Field

from pep.settings_base import Frozen, as_dsn, masked
from pep.sqlite_wal import connect_wal


class ConversationSettings(Frozen):
    # None: SQLite at <data_dir>/responses.db, or the audit store's PostgreSQL when the audit
    # is on PostgreSQL (so replicas share conversations). "memory", "off", sqlite:///path or
    # postgresql://... explicitly.
    store: Annotated[str, Field(pattern=r"^(memory|off|sqlite:///.+|postgres(ql)?://.+)$"),
                     AfterValidator(as_dsn)] | None = None
    retention_s: int = Field(30 * 24 * 3600, gt=0)
    pg_schema: str = Field("public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")


class ConversationUnavailable(Exception):
    """The conversation store cannot read or write."""


class ConversationStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, response_id: str, owner: str, doc: dict[str, Any]) -> None: ...

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None: ...

    async def delete(self, response_id: str, owner: str) -> bool: ...


def owner_key(issuer: str, sub: str) -> str:
    return f"{issuer}\n{sub}"  # a newline cannot occur in either (validated claims)


class MemoryConversations:
    def __init__(self, retention_s: int) -> None:
        self._docs: dict[str, tuple[str, float, dict[str, Any]]] = {}
        self._retention = retention_s

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._docs.clear()

    async def put(self, response_id: str, owner: str, doc: dict[str, Any]) -> None:
        self._docs[response_id] = (owner, time.time() + self._retention, doc)

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None:
        entry = self._docs.get(response_id)
        if entry is None or entry[0] != owner or entry[1] < time.time():
            return None
        return entry[2]

    async def delete(self, response_id: str, owner: str) -> bool:
        entry = self._docs.get(response_id)
        if entry is None or entry[0] != owner:
            return False
        del self._docs[response_id]
        return True


class OffConversations(MemoryConversations):
    """Conversation state disabled: nothing is kept, every id is unknown."""

    async def put(self, response_id: str, owner: str, doc: dict[str, Any]) -> None:
        return None


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
"""


class SqliteConversations:
    """One connection used from worker threads under a lock (writes are small and rare
    compared with model calls; WAL keeps readers off the writer's back)."""

    def __init__(self, path: Path, retention_s: int) -> None:
        self._path = path
        self._retention = retention_s
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._puts = 0

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Several processes (serve --workers N) may write the same file: WAL switched with
        # retries, then a busy timeout so writers wait for each other's lock.
        db = connect_wal(self._path)
        # The write lock up front (a read turned write in WAL is busy without waiting).
        db.executescript("BEGIN IMMEDIATE;" + _SQLITE_SCHEMA + "COMMIT;")
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    def _run(self, sql: str, args: tuple[Any, ...]) -> Any:
        if self._db is None:
            raise ConversationUnavailable("conversation store is closed")
        try:
            with self._lock:
                cur = self._db.execute(sql, args)
                return cur.fetchone() if sql.lstrip().startswith("SELECT") else cur.rowcount
        except sqlite3.Error as exc:
            raise ConversationUnavailable(str(exc)) from exc

    async def put(self, response_id: str, owner: str, doc: dict[str, Any]) -> None:
        now = time.time()
        await asyncio.to_thread(
            self._run, "INSERT OR REPLACE INTO responses (id, owner, expires_at, doc) "
            "VALUES (?, ?, ?, ?)", (response_id, owner, now + self._retention, orjson.dumps(doc)))
        self._puts += 1
        if self._puts % 500 == 0:  # expire in the background of writes, never on reads
            await asyncio.to_thread(self._run, "DELETE FROM responses WHERE expires_at < ?",
                                    (now,))

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None:
        row = await asyncio.to_thread(
            self._run, "SELECT doc FROM responses WHERE id = ? AND owner = ? AND expires_at >= ?",
            (response_id, owner, time.time()))
        return None if row is None else orjson.loads(row[0])

    async def delete(self, response_id: str, owner: str) -> bool:
        count = await asyncio.to_thread(
            self._run, "DELETE FROM responses WHERE id = ? AND owner = ?", (response_id, owner))
        return bool(count)


class PostgresConversations:
    def __init__(self, dsn: str, schema: str, retention_s: int) -> None:
        self._dsn = dsn
        self._table = f'"{schema}".regogate_responses'
        self._schema = schema
        self._retention = retention_s
        self._pool: Any = None
        self._puts = 0

    async def start(self) -> None:
        import asyncpg  # noqa: PLC0415 - only when configured

        try:
            self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=8,
                                                   command_timeout=5)
            async with self._pool.acquire() as conn, conn.transaction():
                # Workers and replicas starting together: concurrent CREATE ... IF NOT EXISTS
                # race in the catalogue (a unique violation on pg_type), so they take turns.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                   f"regogate-responses:{self._schema}")
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema}"')
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._table} (id TEXT PRIMARY KEY, "
                    "owner TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL, doc BYTEA NOT NULL)")
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConversationUnavailable(f"cannot open the conversation store: {exc}") from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _query(self, method: str, sql: str, *args: Any) -> Any:
        import asyncpg  # noqa: PLC0415

        if self._pool is None:
            raise ConversationUnavailable("conversation store is closed")
        try:
            return await getattr(self._pool, method)(sql, *args)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ConversationUnavailable(str(exc)) from exc

    async def put(self, response_id: str, owner: str, doc: dict[str, Any]) -> None:
        now = time.time()
        await self._query(
            "execute", f"INSERT INTO {self._table} (id, owner, expires_at, doc) VALUES "
            "($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET owner = EXCLUDED.owner, "
            "expires_at = EXCLUDED.expires_at, doc = EXCLUDED.doc",
            response_id, owner, now + self._retention, orjson.dumps(doc))
        self._puts += 1
        if self._puts % 500 == 0:
            await self._query("execute", f"DELETE FROM {self._table} WHERE expires_at < $1", now)

    async def get(self, response_id: str, owner: str) -> dict[str, Any] | None:
        raw = await self._query(
            "fetchval", f"SELECT doc FROM {self._table} WHERE id = $1 AND owner = $2 "
            "AND expires_at >= $3", response_id, owner, time.time())
        return None if raw is None else orjson.loads(raw)

    async def delete(self, response_id: str, owner: str) -> bool:
        status = await self._query(
            "execute", f"DELETE FROM {self._table} WHERE id = $1 AND owner = $2",
            response_id, owner)
        return str(status).endswith(" 1")


def open_conversations(settings: ConversationSettings, audit: Any,
                       data_dir: Path) -> ConversationStore:
    """The configured store; by default the audit store's kind (so replicas that share a
    PostgreSQL trail share conversations too)."""
    url, schema = settings.store, settings.pg_schema
    if url is None and audit.store and audit.store.startswith(("postgresql://", "postgres://")):
        url, schema = audit.store, audit.pg_schema
    if url is None:
        return SqliteConversations(Path(data_dir) / "responses.db", settings.retention_s)
    if url == "memory":
        return MemoryConversations(settings.retention_s)
    if url == "off":
        return OffConversations(settings.retention_s)
    if url.startswith("sqlite:///"):
        return SqliteConversations(Path(url[len("sqlite:///"):]), settings.retention_s)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresConversations(url, schema, settings.retention_s)
    raise ValueError(f"responses.store: unsupported value {masked(url)!r}: use sqlite:///path, "
                     "postgresql://..., memory or off")
