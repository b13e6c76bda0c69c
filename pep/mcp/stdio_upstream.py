"""A local MCP server over stdio, launched and supervised by the gateway.

MCP stdio transport: the client (here, the gateway) starts the server as a child process
and exchanges newline-delimited JSON-RPC messages on its stdin/stdout; stderr is free-form
logging. Here:

    start()      spawn (command from configuration only; no shell), MCP handshake
                 (initialize -> notifications/initialized); a supervisor restarts the child
                 when it exits, with exponential backoff
    send(msg)    the request gets a gateway-side id (callers' ids may collide across users),
                 the answer is matched back by that id and given the caller's id again;
                 ``initialize`` is answered from the handshake's result (one child serves
                 every session); no answer within ``timeout_s`` -> ``UpstreamTimeout`` and a
                 ``notifications/cancelled`` to the child
    failures     the child not running / dying with requests pending / writing anything
                 that is not one JSON-RPC object per line (garbage, over-long lines) ->
                 ``UpstreamUnavailable``; garbage also kills the child (it is restarted)

The child's own notifications and requests are not relayed: one process serves many users,
so nothing it says outside an answer can be attributed to one of them. It may ``ping`` (we
answer); any other request gets JSON-RPC -32601. stderr lines are logged with the configured
secret values and token-shaped strings masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from pep.mcp.stdio_settings import StdioServerSettings
from pep.mcp.upstream import UpstreamReply, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("regogate.mcp.stdio")

_TOKENISH = re.compile(
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+|eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|\bsk-[A-Za-z0-9_-]{8,}")


class _StartFailed(Exception):
    pass


class StdioUpstream:
    def __init__(self, name: str, settings: StdioServerSettings, *,
                 environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._s = settings
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._secrets = [v.get_secret_value() for v in settings.env.values()
                         if len(v.get_secret_value()) >= 4]
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._init_result: dict[str, Any] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._protocol_error: str | None = None
        self.restarts = 0
        self.last_exit: int | None = None
        self.planned_delays: list[float] = []  # the last restart delays chosen (diagnostics)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Launch the child and wait (up to ``startup_timeout_s``) for its handshake. A child
        that will not start does not stop the gateway: it is retried in the background and
        its requests are refused (``UpstreamUnavailable``) until it is up."""
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name=f"mcp-stdio:{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), self._s.startup_timeout_s)
        if not self._ready.is_set():
            log.error("MCP stdio server %s not ready at start-up; retrying in the background",
                      self.name)

    async def close(self) -> None:
        self._stopping = True
        await self._stop_child(graceful=True)  # stdin closed first: the child may tidy up
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._stop_child(graceful=False)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "pid": self.pid, "restarts": self.restarts,
                "last_exit": self.last_exit, "in_flight": len(self._pending)}

    async def _supervise(self) -> None:
        delay = self._s.restart_backoff_initial_s
        while not self._stopping:
            started = self._clock()
            try:
                await self._run_child()
            except _StartFailed as exc:
                log.error("MCP stdio server %s failed to start: %s", self.name, exc)
            finally:
                self._ready.clear()
                await self._stop_child(graceful=False)
                self._fail_pending(self._protocol_error or "the stdio server exited")
                self._protocol_error = None
            if self._stopping:
                return
            if self._clock() - started >= self._s.backoff_reset_after_s:
                delay = self._s.restart_backoff_initial_s
            self.restarts += 1
            self.planned_delays = [*self.planned_delays[-19:], delay]
            log.warning("MCP stdio server %s exited (code %s); restarting in %.2fs",
                        self.name, self.last_exit, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._s.restart_backoff_max_s)

    async def _run_child(self) -> None:
        s = self._s
        env = {k: self._environ[k] for k in s.inherit_env if k in self._environ}
        env.update({k: v.get_secret_value() for k, v in s.env.items()})
        try:
            proc = await asyncio.create_subprocess_exec(
                s.command, *s.args, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
                cwd=s.cwd, start_new_session=True, limit=s.max_message_bytes)
        except OSError as exc:
            raise _StartFailed(f"cannot run {s.command!r}: {exc.strerror or exc}") from None
        self._proc = proc
        reader = asyncio.create_task(self._read_stdout(proc))
        logger = asyncio.create_task(self._read_stderr(proc))
        exited = asyncio.create_task(proc.wait())
        try:
            await self._handshake(reader, exited)
            self._ready.set()
            log.info("MCP stdio server %s ready (pid %s)", self.name, proc.pid)
            await asyncio.wait({reader, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._ready.clear()
            for task in (reader, exited):
                task.cancel()
            await self._stop_child(graceful=False)
            logger.cancel()
            for task in (reader, exited, logger):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.last_exit = proc.returncode

    async def _handshake(self, reader: asyncio.Task[None], exited: asyncio.Task[int]) -> None:
        request = {"jsonrpc": "2.0", "method": "initialize", "params": {
            "protocolVersion": self._s.protocol_version, "capabilities": {},
            "clientInfo": {"name": "regogate", "version": "0.1.0"}}}
        call = asyncio.create_task(self._call(request, self._s.startup_timeout_s))
        done, _ = await asyncio.wait({call, reader, exited}, return_when=asyncio.FIRST_COMPLETED)
        if call not in done:
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await call
            raise _StartFailed(self._protocol_error or "exited during the MCP handshake")
        try:
            reply = call.result()
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            raise _StartFailed(f"MCP handshake failed: {exc}") from None
        result = reply.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("protocolVersion"), str):
            raise _StartFailed("MCP handshake failed: initialize answered without a result")
        self._init_result = result
        await self._write({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _stop_child(self, *, graceful: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            timeout = self._s.shutdown_timeout_s if graceful else 0.5
            if proc.stdin is not None and graceful:
                with contextlib.suppress(OSError, RuntimeError):
                    proc.stdin.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if proc.returncode is not None:
                    break
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)  # the whole group: its own children too
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout)
        if proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.close()
        self._proc = None

    # -- the wire ---------------------------------------------------------------------------

    async def _write(self, message: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            raise UpstreamUnavailable(f"stdio server {self.name} is not running")
        # orjson never writes a raw newline (control characters are escaped), so one message
        # is exactly one line, as the stdio transport requires.
        line = orjson.dumps(message) + b"\n"
        try:
            async with self._write_lock:
                proc.stdin.write(line)
                await proc.stdin.drain()
        except (OSError, RuntimeError) as exc:
            raise UpstreamUnavailable(
                f"stdio server {self.name} cannot be written to ({type(exc).__name__})"
            ) from None

    async def _call(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if len(self._pending) >= self._s.max_in_flight:
            raise UpstreamUnavailable(f"stdio server {self.name} has too many requests in flight")
        our_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[our_id] = fut
        try:
            await self._write({**message, "id": our_id})
            return await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except TimeoutError:
            with contextlib.suppress(UpstreamUnavailable):
                await self._write({"jsonrpc": "2.0", "method": "notifications/cancelled",
                                   "params": {"requestId": our_id, "reason": "timeout"}})
            raise UpstreamTimeout(
                f"stdio server {self.name} did not answer within {timeout_s:g}s") from None
        finally:
            self._pending.pop(our_id, None)

    def _fail_pending(self, why: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(UpstreamUnavailable(f"stdio server {self.name}: {why}"))
        self._pending.clear()

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                self._violation(f"a line longer than {self._s.max_message_bytes} bytes")
                return
            if not line:
                return  # EOF: the child closed stdout or exited
            if not line.strip():
                continue
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                self._violation(f"{len(line)} bytes that are not JSON")
                return
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                self._violation("JSON that is not a JSON-RPC 2.0 message")
                return
            await self._dispatch(message)

    def _violation(self, what: str) -> None:
        # Content is not logged: it may be anything, secrets included.
        self._protocol_error = f"wrote {what} on stdout (not the MCP stdio transport)"
        log.warning("MCP stdio server %s %s; restarting it", self.name, self._protocol_error)
        self._fail_pending(self._protocol_error)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        msg_id = message.get("id")
        if method is None:
            fut = self._pending.get(msg_id) if isinstance(msg_id, int) else None
            if fut is not None and not fut.done() and ("result" in message or "error" in message):
                fut.set_result(message)
            else:
                log.debug("MCP stdio server %s: answer to no pending request dropped", self.name)
            return
        if msg_id is None:
            log.debug("MCP stdio server %s: notification %s not relayed", self.name,
                      str(method)[:64])
            return
        if method == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "result": {}}
        else:
            reply = {"jsonrpc": "2.0", "id": msg_id, "error": {
                "code": -32601, "message": "the gateway does not relay server requests"}}
        with contextlib.suppress(UpstreamUnavailable):
            await self._write(reply)

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        cap = self._s.max_log_line_chars
        while True:
            try:
                raw = await proc.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                # An over-long line: skip what is buffered and go on.
                raw = await proc.stderr.read(self._s.max_message_bytes)
            if not raw:
                return
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if text:
                log.info("MCP stdio server %s: %s", self.name, self.mask(text)[:cap])

    def mask(self, text: str) -> str:
        """A stderr line as logged: configured secrets and token-shaped strings masked."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _TOKENISH.sub(lambda m: (m.group(1) or "") + "***", text)

    # -- McpUpstream ------------------------------------------------------------------------

    async def send(self, message: dict[str, Any], *, headers: Mapping[str, str],
                   session_id: str | None, timeout_s: float) -> UpstreamReply:
        """``headers`` (upstream credentials) have no meaning on stdio and are not used; a
        stdio server gets its credentials from ``env``. ``session_id`` is not used: the child
        is one session."""
        if not self._ready.is_set() or self._init_result is None:
            raise UpstreamUnavailable(f"stdio server {self.name} is not running (restarting)")
        method = message.get("method")
        if "id" not in message:
            if method in ("notifications/initialized", "notifications/cancelled"):
                # The gateway did the handshake itself; a caller's cancel names its own id,
                # which the child never saw.
                return UpstreamReply(202, [], None)
            await self._write(message)
            return UpstreamReply(202, [], None)
        if method == "initialize":
            reply = {"jsonrpc": "2.0", "id": message["id"], "result": self._init_result}
            return UpstreamReply(200, [reply], None)
        answer = await self._call(message, timeout_s)
        return UpstreamReply(200, [{**answer, "id": message["id"]}], None)
