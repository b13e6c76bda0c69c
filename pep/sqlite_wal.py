"""Open a SQLite file in WAL mode when several processes may open it at once.

Switching a new file to WAL takes an exclusive lock and SQLite answers "database is locked"
at once instead of calling the busy handler, so workers of ``serve --workers N`` starting
together would fail on the shared cache or Responses file. The switch is retried for a
bounded time (it is a one-off per file); any other error is raised as is.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

WAL_SWITCH_WAIT_S = 5.0


def connect_wal(path: Path | str, *, busy_timeout_ms: int = 2000,
                wait_s: float = WAL_SWITCH_WAIT_S) -> sqlite3.Connection:
    """A connection (autocommit, usable from other threads) with WAL, synchronous=NORMAL and
    a busy timeout, so later writers wait for each other instead of failing."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        db.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        db.close()
        raise
    return db
