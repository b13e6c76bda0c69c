"""Several processes opening one new SQLite file at once (serve --workers N): the WAL switch
answers "database is locked" without waiting, so connect_wal retries it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pep.sqlite_wal import connect_wal

_OPENER = """
import sys, time
from pep.sqlite_wal import connect_wal
start = float(sys.argv[2])
while time.time() < start:
    pass
db = connect_wal(sys.argv[1])
db.executescript("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS t (x); COMMIT;")
db.execute("INSERT INTO t VALUES (1)")
print(db.execute("PRAGMA journal_mode").fetchone()[0])
"""


def test_processes_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    for round_ in range(8):
        path = tmp_path / f"shared-{round_}.sqlite3"
        start = time.time() + 0.5
        procs = [subprocess.Popen([sys.executable, "-c", _OPENER, str(path), str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        results = [p.communicate(timeout=60) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
        assert [out.strip() for out, _ in results] == ["wal"] * 4
        db = sqlite3.connect(path)
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 4
        db.close()


def test_a_lock_held_past_the_wait_is_raised_not_hidden(tmp_path: Path) -> None:
    path = tmp_path / "held.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            connect_wal(path, busy_timeout_ms=10, wait_s=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db = connect_wal(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    db.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError, match="unable to open"):
        connect_wal(tmp_path / "missing-dir" / "x.sqlite3", wait_s=5)
