"""``regogate serve --workers N``: one supervisor, N gateway processes on one port.

Each worker is a fresh interpreter (``multiprocessing`` *spawn*: no state inherited from the
supervisor) with its own event loop, running the same ``create_app`` as a single process and
binding the port with ``SO_REUSEPORT``, so the kernel spreads new connections over the
workers. The supervisor:

* checks first that the configuration is correct with several processes
  (``multiworker_problems``: one audit chain, shared counters, shared conversation state),
  and that the port is free (a plain bind, so a second ``serve`` on the same port is refused
  rather than silently sharing it); it holds that port bound (not listening) until it exits;
* starts the workers and waits until every one is listening; if one cannot start, it stops
  the others and exits non-zero with that worker's one-line reason;
* restarts a worker that exits while the service runs (the others keep serving), backing off
  when restarts fail in a row and giving up, non-zero, after ``MAX_FAILED_STARTS``;
* forwards SIGINT/SIGTERM/SIGHUP to every worker as a graceful stop (each closes its
  components: the audit writer drains and seals), and kills a worker that has not stopped
  after ``STOP_GRACE_S``.

A worker watches its pipe to the supervisor: if the supervisor dies, the pipe reaches EOF and
the worker stops too (no orphan keeps the port). Why each piece of shared state is safe with
several processes, or refused, is in docs/architecture.md ("Several worker processes").
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from pep.config import Settings

log = logging.getLogger("regogate.workers")

WORKER_HEADER = "x-regogate-worker"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 30.0
MAX_FAILED_STARTS = 5
MAX_WORKERS = 64


class WorkersError(Exception):
    """The workers cannot run (configuration, port, or a worker that cannot start)."""


def multiworker_problems(settings: Settings) -> list[str]:
    """What would be wrong with this configuration in several processes (empty: nothing)."""
    problems: list[str] = []
    store = settings.audit.store or ""
    if not store.startswith(("postgresql://", "postgres://")):
        problems.append(
            "audit.store must be postgresql://... with --workers > 1: every worker appends to"
            " one hash chain under a row lock there, while a SQLite trail has one writer"
            " process")
    if settings.usage.store == "memory":
        problems.append(
            "usage.store must be redis://... with --workers > 1: in-memory counters would be"
            " per worker, so every quota would be enforced N times too loosely")
    if settings.responses.store == "memory":
        problems.append(
            "responses.store must not be 'memory' with --workers > 1: a response stored by"
            " one worker would be unknown to the others (use the default or postgresql://)")
    if settings.mcp.enabled and settings.mcp.servers:
        problems.append(
            "mcp must be off (mcp.enabled: false, or no mcp.servers) with --workers > 1: MCP"
            " sessions live in the process that opened them, so a client's next connection"
            " reaching another worker would get 404 (serve MCP from a one-worker gateway)")
    if settings.workspace.client_id is not None and settings.workspace.session_store == "memory":
        problems.append(
            "workspace.session_store must be redis://... with --workers > 1: a sign-in"
            " started on one worker would be unknown to the worker its callback reaches")
    return problems


def free_port_check(host: str, port: int) -> int:
    """The port, if nobody holds it (a plain bind: anyone listening on it, reuse-port or not,
    makes this fail, so a second ``serve`` on the same port is refused). Port 0 picks one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As aiohttp binds (reuse_address): a port left in TIME_WAIT by a killed process is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        return int(sock.getsockname()[1])


def reserve_port(host: str, port: int) -> socket.socket:
    """Hold the port bound, with SO_REUSEPORT and without listening, while the supervisor
    runs: workers join it (a bound socket that does not listen takes no connections), and a
    process that does not set SO_REUSEPORT cannot take the port meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


# -- worker side ----------------------------------------------------------------------------


def worker_main(settings: Settings, index: int, conn: Connection, log_level: str,
                log_format: str) -> None:
    """Entry point of one worker process (spawned: runs in a fresh interpreter)."""
    from aiohttp import web

    from pep.app import StartupError, create_app
    from pep.http.edge import run
    from pep.logs import setup_logging

    setup_logging(log_level, log_format)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency
        pass
    # The supervisor handles Ctrl-C for the group; a terminal's SIGINT reaching the worker
    # too is the same graceful stop (edge.run handles both).
    label = str(index)

    async def tag(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers[WORKER_HEADER] = label

    try:
        app = create_app(settings)
        app.on_response_prepare.append(tag)
        run(app, host=settings.server.host, port=settings.server.port, reuse_port=True,
            stop_on_readable=conn.fileno(),
            on_listening=lambda: conn.send(("ready", os.getpid())))
    except StartupError as exc:
        _report(conn, f"cannot start: {exc}")
        sys.exit(2)
    except OSError as exc:
        _report(conn, f"cannot listen on {settings.server.host}:{settings.server.port}:"
                      f" {exc.strerror or exc}")
        sys.exit(2)


def _report(conn: Connection, message: str) -> None:
    try:
        conn.send(("error", message))
    except OSError:
        pass


# -- supervisor side ------------------------------------------------------------------------


@dataclass
class _Slot:
    index: int
    proc: BaseProcess | None = None
    conn: Connection | None = None
    ready: bool = False
    error: str | None = None
    failed_starts: int = 0
    restart_at: float | None = None
    pid: int = 0


class Supervisor:
    def __init__(self, settings: Settings, workers: int, *,
                 on_listening: Callable[[list[int], int], None] = lambda _p, _port: None,
                 log_level: str = "INFO", log_format: str = "text") -> None:
        self.settings = settings
        self.slots = [_Slot(i) for i in range(1, workers + 1)]
        self._on_listening = on_listening
        self._log = (log_level, log_format)
        self._ctx = multiprocessing.get_context("spawn")
        self._stop_signal: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self.restarts = 0

    # signals arrive as bytes on the wake-up socket (signal.set_wakeup_fd)
    def _install_signals(self) -> None:
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum

    def _spawn(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main, name=f"regogate-worker-{slot.index}", daemon=False,
            args=(self.settings, slot.index, child, *self._log))
        proc.start()
        child.close()  # only the worker holds the write end: EOF here = the worker is gone
        slot.proc, slot.conn, slot.ready, slot.error = proc, parent, False, None
        slot.restart_at, slot.pid = None, proc.pid or 0

    def run(self) -> int:
        """Start, watch, restart; return the exit code (0 after a requested stop)."""
        self._install_signals()
        try:
            for slot in self.slots:
                self._spawn(slot)
            self._wait_all_ready()
            if self._stop_signal is None:
                self._on_listening([s.pid for s in self.slots], self.settings.server.port)
                self._watch()
            return 0
        finally:
            self._stop_all()
            signal.set_wakeup_fd(-1)

    def _events(self, timeout: float) -> None:
        """Wait for a message, a worker exit or a signal; record what happened."""
        objs: list[Any] = [self._wake_r]
        for s in self.slots:
            if s.proc is not None:
                objs.append(s.proc.sentinel)
            if s.conn is not None and not s.ready:
                objs.append(s.conn)
        wait(objs, timeout=max(0.0, timeout))
        try:
            while self._wake_r.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        for s in self.slots:
            if s.conn is not None and not s.ready and s.conn.poll():
                try:
                    kind, value = s.conn.recv()
                except (EOFError, OSError):
                    kind, value = "gone", None
                if kind == "ready":
                    s.ready, s.failed_starts = True, 0
                    log.info("worker %d listening (pid %d)", s.index, value)
                elif kind == "error":
                    s.error = str(value)

    def _exited(self, slot: _Slot) -> bool:
        return slot.proc is not None and slot.proc.exitcode is not None

    def _why(self, slot: _Slot) -> str:
        code = slot.proc.exitcode if slot.proc is not None else None
        return slot.error or f"exited with code {code} before listening"

    def _wait_all_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while self._stop_signal is None and not all(s.ready for s in self.slots):
            left = deadline - time.monotonic()
            if left <= 0:
                slow = next(s for s in self.slots if not s.ready)
                raise WorkersError(f"worker {slow.index} did not start within"
                                   f" {START_TIMEOUT_S:.0f} s")
            self._events(left)
            for s in self.slots:
                if not self._exited(s):
                    continue
                if not s.ready and s.conn is not None and s.conn.poll():
                    self._events(0)  # its last words arrived with its exit
                raise WorkersError(f"worker {s.index} {self._why(s)}" if not s.ready else
                                   f"worker {s.index} exited with code"
                                   f" {s.proc.exitcode if s.proc else None} during start-up")

    def _watch(self) -> None:
        while self._stop_signal is None:
            now = time.monotonic()
            due = [s.restart_at for s in self.slots if s.restart_at is not None]
            self._events(min(due) - now if due else 3600.0)
            now = time.monotonic()
            for s in self.slots:
                if s.restart_at is None and self._exited(s):
                    self._reap(s, now)
                elif s.restart_at is not None and now >= s.restart_at and self._stop_signal is None:
                    self._spawn(s)
                    self.restarts += 1

    def _reap(self, slot: _Slot, now: float) -> None:
        assert slot.proc is not None
        code = slot.proc.exitcode
        if not slot.ready:
            slot.failed_starts += 1
            if slot.failed_starts >= MAX_FAILED_STARTS:
                raise WorkersError(f"worker {slot.index} failed to restart"
                                   f" {slot.failed_starts} times in a row: {self._why(slot)}")
            log.error("worker %d could not restart (%s); retrying", slot.index, self._why(slot))
        else:
            log.error("worker %d (pid %d) exited with code %s; restarting it", slot.index,
                      slot.pid, code)
        self._close(slot)
        slot.restart_at = now + min(30.0, 0.5 * 2 ** slot.failed_starts) if slot.failed_starts \
            else now
        slot.proc = None

    def _close(self, slot: _Slot) -> None:
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        if slot.proc is not None:
            slot.proc.join(timeout=0)

    def _stop_all(self) -> None:
        live = [s for s in self.slots if s.proc is not None and s.proc.exitcode is None]
        for s in live:
            assert s.proc is not None and s.proc.pid is not None
            try:
                os.kill(s.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        for s in live:
            assert s.proc is not None
            s.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if s.proc.exitcode is None:
                log.error("worker %d did not stop within %.0f s; killing it", s.index,
                          STOP_GRACE_S)
                s.proc.kill()
                s.proc.join(timeout=5)
        for s in self.slots:
            self._close(s)


def serve_workers(settings: Settings, workers: int, *,
                  on_listening: Callable[[list[int], int], None], log_level: str,
                  log_format: str) -> int:
    """Check, reserve the port, supervise ``workers`` processes; the exit code."""
    problems = multiworker_problems(settings)
    if problems:
        raise WorkersError("; ".join(problems))
    host, port = settings.server.host, settings.server.port
    chosen = free_port_check(host, port)
    reservation = reserve_port(host, chosen)
    try:
        if chosen != port:
            settings = settings.model_copy(
                update={"server": settings.server.model_copy(update={"port": chosen})})
        return Supervisor(settings, workers, on_listening=on_listening, log_level=log_level,
                          log_format=log_format).run()
    finally:
        reservation.close()
