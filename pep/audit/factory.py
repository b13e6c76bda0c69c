"""Build the configured audit store (by URL scheme) and its checkpoint signer."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from pep.audit.checkpoints import Signer, ensure_default_key, load_private_key
from pep.audit.settings import AuditSettings
from pep.audit.witness import Witness, WitnessConfig, default_witness_dir

if TYPE_CHECKING:
    from pep.audit.events import AuditStore

DEFAULT_DB_NAME = "audit.db"


class StoreURLError(ValueError):
    """The audit store URL has a scheme or shape we do not support."""


def store_url(settings: AuditSettings, data_dir: Path) -> str:
    if settings.store:
        return settings.store
    return f"sqlite:///{(Path(data_dir) / DEFAULT_DB_NAME).as_posix()}"


def sqlite_path(url: str) -> Path:
    """sqlite:///relative/path.db or sqlite:////absolute/path.db (SQLAlchemy convention)."""
    if not url.startswith("sqlite:///"):
        raise StoreURLError(f"not a SQLite URL: {url!r}")
    rest = url[len("sqlite:///") :]
    if not rest:
        raise StoreURLError("sqlite URL has no path")
    return Path(rest)


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def make_signer(settings: AuditSettings, data_dir: Path) -> Signer:
    key_path = settings.signing_key or ensure_default_key(Path(data_dir))
    writer = settings.replica_id or f"{socket.gethostname()}-{os.getpid()}"
    return Signer(load_private_key(key_path), writer)


def witness_dir(settings: AuditSettings, data_dir: Path) -> Path:
    return settings.checkpoint_dir or default_witness_dir(Path(data_dir))


def make_witness(settings: AuditSettings, data_dir: Path) -> Witness:
    return Witness(WitnessConfig(
        directory=witness_dir(settings, data_dir), log_file=settings.witness_log,
        syslog=settings.witness_syslog, url=settings.witness_url,
        timeout_s=settings.write_timeout_s))


def open_store(settings: AuditSettings, data_dir: Path) -> AuditStore:
    url = store_url(settings, data_dir)
    signer = make_signer(settings, data_dir)
    common = {
        "checkpoint_every_records": settings.checkpoint_every_records,
        "checkpoint_every_s": settings.checkpoint_every_s,
        "seal_idle_s": settings.seal_idle_s,
        "witness": make_witness(settings, data_dir),
        "max_batch": settings.max_batch,
        "write_timeout_s": settings.write_timeout_s,
    }
    if url.startswith("sqlite:"):
        from pep.audit.sqlite_store import SqliteAuditStore

        return SqliteAuditStore(sqlite_path(url), signer,
                                commit_window_s=settings.commit_window_ms / 1000,
                                **common)  # type: ignore[arg-type]
    if is_postgres(url):
        from pep.audit.postgres_store import PostgresAuditStore

        return PostgresAuditStore(url, signer, schema=settings.pg_schema, **common)  # type: ignore[arg-type]
    raise StoreURLError(
        f"audit.store: unsupported URL scheme in {url.split('://')[0]!r}: "
        "use sqlite:///path or postgresql://..."
    )
