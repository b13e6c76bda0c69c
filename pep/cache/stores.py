"""Where cached answers live: an in-process LRU bounded in bytes, SQLite under the data dir
(with the LRU in front), and Redis for replicas (TTL native, shared).

Every entry carries its filler's identity (issuer, sub, team) and model beside the answer, so
``regogate cache purge --user`` removes everything a person put in (offboarding, erasure).
A purge made by another process (the CLI) reaches a running gateway's LRU at its next lookup:
every purge bumps ``cache_meta.purge_seq``, which each lookup reads, and a changed value drops
the LRU.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pep.cache.settings import CacheSettings
from pep.sqlite_wal import connect_wal

log = logging.getLogger("regogate.cache")


class CacheUnavailable(Exception):
    """The store failed; the cache is an optimisation, so callers treat this as a miss."""


@dataclass(slots=True, frozen=True)
class EntryMeta:
    sub: str
    issuer: str
    team: str | None
    model: str
    scope: str


@dataclass(slots=True, frozen=True)
class Purge:
    user: str | None = None
    team: str | None = None
    model: str | None = None
    everything: bool = False

    def matches(self, meta: EntryMeta) -> bool:
        if self.everything:
            return True
        return ((self.user is None or meta.sub == self.user)
                and (self.team is None or meta.team == self.team)
                and (self.model is None or meta.model == self.model)
                and (self.user, self.team, self.model) != (None, None, None))


class Counters(Protocol):
    def inc(self, name: str, value: float = 1.0, **labels: str) -> None: ...

    def add(self, name: str, delta: float, **labels: str) -> None: ...


class CacheStore(Protocol):
    kind: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, blob: bytes, ttl_s: int, meta: EntryMeta) -> None: ...
    async def purge(self, what: Purge) -> int: ...
    async def stats(self) -> dict[str, Any]: ...


class _Nothing:
    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        return None

    def add(self, name: str, delta: float, **labels: str) -> None:
        return None


class MemoryStore:
    """LRU bounded by the bytes of the entries it holds."""

    kind = "memory"

    def __init__(self, max_bytes: int, metrics: Counters | None = None) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, bytes, EntryMeta]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0
        self._metrics = metrics or _Nothing()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.clear()

    def get_now(self, key: str, now: float) -> bytes | None:
        item = self._entries.get(key)
        if item is None:
            return None
        if item[0] <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return item[1]

    def put_now(self, key: str, blob: bytes, expires_at: float, meta: EntryMeta) -> None:
        if len(blob) > self.max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (expires_at, blob, meta)
        self._account(len(blob))
        while self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self.evictions += 1
            self._metrics.inc("cache_evictions_total")

    def _account(self, delta: int) -> None:
        self.bytes += delta
        self._metrics.add("cache_memory_bytes", delta)
        self._metrics.add("cache_memory_entries", 1 if delta > 0 else -1)

    def _drop(self, key: str) -> None:
        _, blob, _ = self._entries.pop(key)
        self._account(-len(blob))

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def purge_now(self, what: Purge) -> int:
        doomed = [k for k, (_, _, m) in self._entries.items() if what.matches(m)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def get(self, key: str) -> bytes | None:
        return self.get_now(key, time.time())

    async def put(self, key: str, blob: bytes, ttl_s: int, meta: EntryMeta) -> None:
        self.put_now(key, blob, time.time() + ttl_s, meta)

    async def purge(self, what: Purge) -> int:
        return self.purge_now(what)

    async def stats(self) -> dict[str, Any]:
        return {"store": "memory", "entries": len(self._entries), "bytes": self.bytes,
                "max_bytes": self.max_bytes, "evictions": self.evictions}


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    created_at REAL NOT NULL,
    sub TEXT NOT NULL,
    issuer TEXT NOT NULL,
    team TEXT,
    model TEXT NOT NULL,
    scope TEXT NOT NULL,
    size INTEGER NOT NULL,
    blob BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_entries_sub ON cache_entries (sub);
CREATE INDEX IF NOT EXISTS cache_entries_team ON cache_entries (team);
CREATE INDEX IF NOT EXISTS cache_entries_model ON cache_entries (model);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires_at);
CREATE TABLE IF NOT EXISTS cache_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO cache_meta (k, v) VALUES ('purge_seq', 0);
"""

_SWEEP_EVERY = 256  # puts between sweeps of expired (and surplus) rows


class SQLiteStore:
    """SQLite under the data dir with the in-process LRU in front.

    Point reads take microseconds and run on the event loop (a thread hand-off would cost
    more). Writes (a WAL commit, ~0.4 ms) go to one writer thread with its own connection:
    the LRU has the entry at once, so the next lookup is a hit before the row is on disk."""

    kind = "sqlite"

    def __init__(self, path: Path, memory: MemoryStore, *, max_entries: int) -> None:
        self.path = path
        self.memory = memory
        self.max_entries = max_entries
        self._db: sqlite3.Connection | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._writer_db: sqlite3.Connection | None = None
        self._pending: set[Future[None]] = set()
        self._purge_seq = -1
        self._puts = 0

    def _connect(self) -> sqlite3.Connection:
        return connect_wal(self.path)

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = self._connect()
        # The write lock up front: several workers creating the schema at once would
        # otherwise fail at once (a read turned write in WAL is busy without waiting).
        db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        self._db = db
        self._purge_seq = self._read_purge_seq()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in list(self._pending)),
                                 return_exceptions=True)
        if self._writer is not None:
            self._writer.submit(self._close_writer).result()
            self._writer.shutdown(wait=True)
            self._writer = None
        self.memory.clear()
        if self._db is not None:
            self._db.close()
            self._db = None

    def _close_writer(self) -> None:
        if self._writer_db is not None:
            self._writer_db.close()
            self._writer_db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise CacheUnavailable("cache store (sqlite) is not started")
        return self._db

    def _read_purge_seq(self) -> int:
        row = self._conn().execute("SELECT v FROM cache_meta WHERE k = 'purge_seq'").fetchone()
        return int(row[0]) if row else 0

    def _sync_memory(self) -> None:
        seq = self._read_purge_seq()
        if seq != self._purge_seq:  # another process purged: forget what we hold
            self._purge_seq = seq
            self.memory.clear()

    async def get(self, key: str) -> bytes | None:
        now = time.time()
        try:
            self._sync_memory()
            blob = self.memory.get_now(key, now)
            if blob is not None:
                return blob
            row = self._conn().execute(
                "SELECT blob, expires_at, sub, issuer, team, model, scope FROM cache_entries "
                "WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"cache store (sqlite) failed: {exc}") from exc
        if row is None or row[1] <= now:
            return None
        blob = bytes(row[0])
        self.memory.put_now(key, blob, row[1], EntryMeta(row[2], row[3], row[4], row[5], row[6]))
        return blob

    async def put(self, key: str, blob: bytes, ttl_s: int, meta: EntryMeta) -> None:
        if self._writer is None:
            raise CacheUnavailable("cache store (sqlite) is not started")
        now = time.time()
        expires = now + ttl_s
        self.memory.put_now(key, blob, expires, meta)
        self._puts += 1
        sweep = self._puts % _SWEEP_EVERY == 0
        future = self._writer.submit(self._write, key, blob, now, expires, meta, sweep)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def _write(self, key: str, blob: bytes, now: float, expires: float, meta: EntryMeta,
               sweep: bool) -> None:
        """On the writer thread. A failed write only loses the entry's durable copy (the LRU
        still holds it), so it is logged, not raised."""
        if self._writer_db is None:
            self._writer_db = self._connect()
        db = self._writer_db
        try:
            db.execute(
                "INSERT OR REPLACE INTO cache_entries (key, expires_at, created_at, sub, issuer, "
                "team, model, scope, size, blob) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, expires, now, meta.sub, meta.issuer, meta.team, meta.model, meta.scope,
                 len(blob), blob))
            if sweep:
                db.execute("DELETE FROM cache_entries WHERE expires_at <= ?", (now,))
                db.execute(
                    "DELETE FROM cache_entries WHERE key IN (SELECT key FROM cache_entries "
                    "ORDER BY created_at DESC LIMIT -1 OFFSET ?)", (self.max_entries,))
        except sqlite3.Error:
            log.warning("cache store (sqlite) could not write an entry", exc_info=True)

    async def flush(self) -> None:
        """Wait for the writes submitted so far (tests, close)."""
        if self._pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in list(self._pending)))

    async def purge(self, what: Purge) -> int:
        clauses: list[str] = []
        args: list[Any] = []
        for column, value in (("sub", what.user), ("team", what.team), ("model", what.model)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if not clauses and not what.everything:
            return 0
        await self.flush()
        where = " AND ".join(clauses) if clauses and not what.everything else "1 = 1"
        db = self._conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            cur = db.execute(f"DELETE FROM cache_entries WHERE {where}", args)  # noqa: S608 - fixed columns
            db.execute("UPDATE cache_meta SET v = v + 1 WHERE k = 'purge_seq'")
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise CacheUnavailable(f"cache store (sqlite) failed: {exc}") from exc
        self._purge_seq = self._read_purge_seq()
        self.memory.purge_now(what)
        return int(cur.rowcount)

    async def stats(self) -> dict[str, Any]:
        await self.flush()
        try:
            row = self._conn().execute(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(expires_at <= ?), 0) "
                "FROM cache_entries", (time.time(),)).fetchone()
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"cache store (sqlite) failed: {exc}") from exc
        return {"store": "sqlite", "path": str(self.path), "entries": int(row[0]),
                "bytes": int(row[1]), "expired": int(row[2]),
                "memory": await self.memory.stats()}


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Exact entries shared by every replica: ``<prefix>e:<key>`` with a native TTL, plus one
    index set per filler, team and model so purges need no scan."""

    kind = "redis"

    def __init__(self, settings: CacheSettings) -> None:
        self.settings = settings
        self.prefix = settings.redis_key_prefix
        self._client: aioredis.Redis | None = None

    async def start(self) -> None:
        s = self.settings
        password = s.redis_password.get_secret_value() if s.redis_password else None
        self._client = aioredis.Redis.from_url(
            s.store, password=password, socket_timeout=s.timeout_s,
            socket_connect_timeout=s.timeout_s, decode_responses=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise CacheUnavailable("cache store (redis) is not started")
        return self._client

    def _index(self, kind: str, value: str) -> str:
        return f"{self.prefix}ix:{kind}:{value}"

    async def get(self, key: str) -> bytes | None:
        try:
            blob = await self._redis().get(self.prefix + "e:" + key)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"cache store (redis) failed: {type(exc).__name__}") from exc
        if blob is None:
            return None
        return blob if isinstance(blob, bytes) else blob.encode()

    async def put(self, key: str, blob: bytes, ttl_s: int, meta: EntryMeta) -> None:
        entry = self.prefix + "e:" + key
        indexes = [self._index("sub", meta.sub), self._index("model", meta.model)]
        if meta.team:
            indexes.append(self._index("team", meta.team))
        try:
            pipe = self._redis().pipeline(transaction=False)
            pipe.set(entry, blob, ex=ttl_s)
            for ix in indexes:
                pipe.sadd(ix, entry)
                pipe.expire(ix, self.settings.max_ttl_s)
            await pipe.execute()
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"cache store (redis) failed: {type(exc).__name__}") from exc

    # The shared vector log (semantic mode): a stream every replica's index replays. A record
    # is {op: add, partition, key, vector (float32 bytes), expires_at, meta} or {op: purge,
    # user, team, model, all}; purges are appended by ``purge`` itself, so a purge from the
    # CLI reaches every replica's index as well as the entries.
    @property
    def vector_log(self) -> str:
        return self.prefix + "vlog"

    async def log_vector(self, partition: str, key: str, vector: bytes, expires_at: float,
                         meta: EntryMeta) -> None:
        fields: dict[Any, Any] = {"op": "add", "partition": partition, "key": key,
                                  "vector": vector, "expires_at": repr(expires_at),
                                  "meta": orjson.dumps([meta.sub, meta.issuer, meta.team,
                                                        meta.model, meta.scope])}
        try:
            await self._redis().xadd(self.vector_log, fields,
                                     maxlen=self.settings.semantic_log_max_len,
                                     approximate=True)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"cache store (redis) failed: {type(exc).__name__}") from exc

    async def read_vector_log(self, after: str, count: int = 1000
                              ) -> list[tuple[str, dict[bytes, bytes]]]:
        """Records after ``after`` (a stream id; "0-0" for all), oldest first."""
        try:
            rows: Any = await self._redis().xrange(self.vector_log, min=f"({after}",
                                                   count=count)
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"cache store (redis) failed: {type(exc).__name__}") from exc
        return [(i.decode() if isinstance(i, bytes) else str(i), f) for i, f in rows or ()]

    async def _log_purge(self, what: Purge) -> None:
        fields: dict[Any, Any] = {"op": "purge", "user": what.user or "", "team": what.team or "",
                  "model": what.model or "", "all": "1" if what.everything else ""}
        r = self._redis()
        if what.everything:  # nothing before it matters any more
            await r.xadd(self.vector_log, fields, maxlen=1, approximate=False)
        else:
            await r.xadd(self.vector_log, fields, maxlen=self.settings.semantic_log_max_len,
                         approximate=True)

    async def purge(self, what: Purge) -> int:
        r = self._redis()
        try:
            if what.everything:
                doomed = [k async for k in r.scan_iter(match=_glob_escape(self.prefix) + "*",
                                                       count=500)
                          if k != self.vector_log.encode()]
                entries = [k for k in doomed if k.startswith((self.prefix + "e:").encode())]
                await self._delete(doomed)
                await self._log_purge(what)
                return len(entries)
            sets = [self._index(kind, value) for kind, value in
                    (("sub", what.user), ("team", what.team), ("model", what.model))
                    if value is not None]
            if not sets:
                return 0
            await self._log_purge(what)
            members = list(await r.sinter(sets))
            if not members:
                return 0
            live = int(await r.exists(*members))
            await self._delete(members)
            pipe = r.pipeline(transaction=False)
            for ix in sets:
                pipe.srem(ix, *members)
            await pipe.execute()
            return live
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"cache store (redis) failed: {type(exc).__name__}") from exc

    async def _delete(self, keys: list[Any]) -> None:
        r = self._redis()
        for i in range(0, len(keys), 500):
            await r.delete(*keys[i:i + 500])

    async def stats(self) -> dict[str, Any]:
        r = self._redis()
        entries = size = 0
        try:
            async for k in r.scan_iter(match=_glob_escape(self.prefix + "e:") + "*", count=500):
                entries += 1
                size += int(await r.strlen(k))
        except (RedisError, OSError) as exc:
            raise CacheUnavailable(f"cache store (redis) failed: {type(exc).__name__}") from exc
        return {"store": "redis", "prefix": self.prefix, "entries": entries, "bytes": size}


def open_store(settings: CacheSettings, data_dir: Path, metrics: Counters | None = None) -> CacheStore:
    memory = MemoryStore(settings.memory_max_bytes, metrics)
    if settings.store == "memory":
        return memory
    if settings.store == "sqlite":
        return SQLiteStore(data_dir / "cache.sqlite3", memory,
                           max_entries=settings.sqlite_max_entries)
    return RedisStore(settings)
