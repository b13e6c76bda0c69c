"""Audit store settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pep.settings_base import Dsn, Frozen


class AuditSettings(Frozen):
    # sqlite:///path/to/audit.db or postgresql://user@host:5432/db. None: SQLite under
    # server.data_dir.
    store: Dsn | None = None
    signing_key: Path | None = None  # Ed25519 private key (PEM) for checkpoints
    checkpoint_every_records: int = Field(1000, gt=0)
    # The longest the head stays unsealed while the gateway runs; also the heartbeat period
    # when idle. `verify` fails on unsealed records older than this (plus tolerance).
    checkpoint_every_s: float = Field(30.0, gt=0)
    # Seal the head once no record has arrived for this long (a burst is sealed right after).
    seal_idle_s: float = Field(1.0, gt=0)
    # External witnesses (pep.audit.witness). The directory is always on: None means
    # `<data_dir>-checkpoints`, beside the data directory.
    checkpoint_dir: Path | None = None
    witness_log: Path | None = None  # append-only JSON-lines copy of every checkpoint
    witness_syslog: str | None = None  # "/dev/log" or "host:port" (UDP)
    witness_url: str | None = None  # POST each checkpoint here (an HTTP witness service)
    # PostgreSQL schema holding the audit tables (created if missing).
    pg_schema: str = Field("public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # Most records committed in one transaction (group commit).
    max_batch: int = Field(512, gt=0, le=10000)
    # SQLite group-commit window: when the last commit carried more than one record (the
    # gateway is under concurrency), the writer waits up to this long for more records
    # before committing, so one fsync serves more requests. 0 disables; a lone request
    # (one record per commit) never waits. Nothing is acknowledged before its commit.
    commit_window_ms: float = Field(1.0, ge=0, le=50)
    # A batch not durable within this time fails: the requests in it get 503.
    write_timeout_s: float = Field(5.0, gt=0)
    # Names this gateway in checkpoints (default: hostname-pid).
    replica_id: str | None = None
