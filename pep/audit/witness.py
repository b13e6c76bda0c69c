"""External witnesses: copies of every signed checkpoint outside the audit database.

Someone who can rewrite the database can also delete its ``audit_checkpoints`` rows; a copy
they cannot reach proves what the trail held. The writer hands each checkpoint, after its
database commit, to one background thread that publishes it to every configured sink:

- a directory (default: ``<data_dir>-checkpoints``, beside the data directory): one file per
  checkpoint, written atomically;
- an append-only JSON-lines file (``audit.witness_log``), fsynced per line;
- syslog (``audit.witness_syslog``: ``/dev/log``, ``host:port`` UDP), one line per checkpoint;
- an HTTP endpoint (``audit.witness_url``): ``POST`` of the checkpoint JSON.

Publishing is off the write path (a slow sink never delays an append) and best effort: a
failing sink is logged and counted, the database copy exists. The verifier reads directories
and JSON-lines files (``--checkpoints``); syslog and HTTP copies are the operator's to keep.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pep.audit.checkpoints import Checkpoint, write_checkpoint_file

log = logging.getLogger("regogate.audit")

_STOP = object()


def default_witness_dir(data_dir: Path) -> Path:
    """The directory beside the data dir: ``/var/lib/regogate`` -> ``/var/lib/regogate-checkpoints``."""
    p = Path(data_dir).absolute()
    return p.with_name(p.name + "-checkpoints")


def append_line(path: Path, cp: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, cp.to_json() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class WitnessConfig:
    directory: Path | None = None
    log_file: Path | None = None
    syslog: str | None = None
    url: str | None = None
    timeout_s: float = 5.0
    extra: dict[str, Any] = field(default_factory=dict)


class Witness:
    """One publisher thread per store; ``publish`` never blocks; ``close`` drains the queue."""

    def __init__(self, cfg: WitnessConfig) -> None:
        self.cfg = cfg
        self.failures = 0
        self.published = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._syslog: logging.handlers.SysLogHandler | None = None

    @property
    def enabled(self) -> bool:
        c = self.cfg
        return any(x is not None for x in (c.directory, c.log_file, c.syslog, c.url))

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        if self.cfg.syslog:
            s = self.cfg.syslog
            address: Any = s
            if ":" in s and not s.startswith("/"):
                host, port = s.rsplit(":", 1)
                address = (host, int(port))
            self._syslog = logging.handlers.SysLogHandler(address=address)
        self._thread = threading.Thread(target=self._run, name="regogate-audit-witness", daemon=True)
        self._thread.start()

    def publish(self, cp: Checkpoint) -> None:
        if self._thread is not None:
            self._queue.put(cp)

    def flush(self) -> None:
        """Wait until everything published so far is out (tests, shutdown)."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout=self.cfg.timeout_s * 4)

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout=self.cfg.timeout_s * 4)
        self._thread = None
        if self._syslog is not None:
            self._syslog.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._publish_now(item)

    def _publish_now(self, cp: Checkpoint) -> None:
        c = self.cfg
        sinks: list[tuple[str, Any]] = []
        if c.directory is not None:
            sinks.append((f"directory {c.directory}", lambda: write_checkpoint_file(c.directory, cp)))
        if c.log_file is not None:
            sinks.append((f"log {c.log_file}", lambda: append_line(c.log_file, cp)))
        if self._syslog is not None:
            handler = self._syslog
            sinks.append(("syslog", lambda: handler.emit(logging.LogRecord(
                "regogate.audit.checkpoint", logging.INFO, __file__, 0,
                "regogate-checkpoint %s", (cp.to_json().decode(),), None))))
        if c.url:
            sinks.append((f"url {c.url}", lambda: self._post(cp)))
        for name, send in sinks:
            try:
                send()
                self.published += 1
            except Exception as exc:  # noqa: BLE001 - a witness failing never stops the writer
                self.failures += 1
                log.error("cannot publish checkpoint seq %s to %s: %s", cp.seq, name, exc)

    def _post(self, cp: Checkpoint) -> None:
        assert self.cfg.url is not None
        req = urllib.request.Request(  # noqa: S310 - the URL comes from the operator's config
            self.cfg.url, data=cp.to_json(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=self.cfg.timeout_s) as resp:  # noqa: S310
            if resp.status >= 300:
                raise OSError(f"witness answered {resp.status}")
