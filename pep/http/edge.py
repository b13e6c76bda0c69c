"""The connection layer: what happens before a request reaches the application.

aiohttp's server gives us the HTTP parser; this module adds what a gateway on a hostile network
needs around it (GUIDE.md 3.9, 3.10, 3.11):

* **header-read deadline** -- a request head must be complete within
  ``server.limits.header_read_timeout_s`` of its first byte, or the connection is closed
  (slow-header clients); idle keep-alive connections close after ``keepalive_timeout_s``.
* **connection cap** -- at most ``max_connections`` open client connections; a new one beyond
  it evicts the oldest connection with no request in progress, or is closed if all are busy.
* **bounded parse work per callback** -- a large read is fed to the parser in slices, yielding
  to the event loop in between, so a body of many tiny chunks cannot stall other requests.
* **malformed requests** -- the parser's own error path logged the raw request bytes
  (bearer token included) with a traceback, per request, and echoed them in a text/plain
  body. Here a malformed request gets one log line (request id, reason code, peer), an
  OpenAI-style JSON 400 with ``x-request-id``, and a ``request.rejected`` audit record.

``GatewayRunner`` is the ``web.AppRunner`` both ``regogate serve`` and the test harness use.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from pep import appkeys
from pep.audit.events import AuditUnavailable
from pep.auditing import rejection_event
from pep.errors import BadRequest, to_body
from pep.exchange import Exchange
from pep.request_ids import new_request_id

log = logging.getLogger("regogate.http")

# Parse at most this much per event-loop callback (~1,400 one-byte chunks, ~2 ms at worst).
PARSE_SLICE_BYTES = 8 * 1024

# Parser exception -> reason code. The exception's message is never used: it may quote the
# received bytes (a header line with a bearer token in it).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (http_exceptions.LineTooLong, "line_too_long"),
    (http_exceptions.BadHttpMethod, "bad_method"),
    (http_exceptions.BadStatusLine, "bad_request_line"),
    (http_exceptions.InvalidURLError, "invalid_url"),
    (http_exceptions.InvalidHeader, "invalid_header"),
    (http_exceptions.TransferEncodingError, "bad_transfer_encoding"),
    (http_exceptions.ContentLengthError, "bad_content_length"),
    (http_exceptions.PayloadEncodingError, "bad_payload_encoding"),
)


def malformed_reason(exc: BaseException | None) -> str:
    for cls, code in _REASONS:
        if isinstance(exc, cls):
            return code
    return "malformed_request"


class EdgeRequestHandler(RequestHandler):
    """One client connection (aiohttp's protocol) with a head deadline and sliced parsing."""

    __slots__ = ("_edge", "_head_timer", "_head_count", "_backlog", "_discarding")

    def __init__(self, edge: EdgeServer, **kwargs: Any) -> None:
        super().__init__(edge, **kwargs)
        self._edge = edge
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0
        self._backlog: list[bytes] | None = None
        self._discarding = False

    # -- reading ---------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        if self._backlog is not None:  # slicing a previous read: keep the order
            self._backlog.append(data)
            self._pause_transport_reading()
            return
        if len(data) <= PARSE_SLICE_BYTES:
            self._feed(data)
            return
        self._edge.metrics_inc("parse_sliced_reads_total")
        view = memoryview(data)
        self._backlog = [bytes(view[i:i + PARSE_SLICE_BYTES])
                         for i in range(PARSE_SLICE_BYTES, len(data), PARSE_SLICE_BYTES)]
        self._pause_transport_reading()
        self._feed(bytes(view[:PARSE_SLICE_BYTES]))
        self._loop.call_soon(self._feed_backlog)

    def _feed_backlog(self) -> None:
        backlog = self._backlog
        if backlog is None:
            return
        if not backlog or self.transport is None or self._force_close:
            self._backlog = None
            if not (self._reading_paused or self._buffer_paused):
                self._resume_transport_reading()
            return
        self._feed(backlog.pop(0))
        self._loop.call_soon(self._feed_backlog)

    def _feed(self, data: bytes) -> None:
        idle = (self._current_request is None and not self._messages
                and not self._request_in_progress)
        before = self._request_count
        super().data_received(data)
        if self._request_count != before:
            self._cancel_head_timer()  # a head was completed (or refused by the parser)
        elif idle and data and self._head_timer is None and not self._force_close:
            self._head_count = before
            self._head_timer = self._loop.call_later(
                self._edge.header_timeout_s, self._head_deadline)

    def _head_deadline(self) -> None:
        self._head_timer = None
        if self._request_in_progress or self._messages or self._request_count != self._head_count:
            return
        self._edge.metrics_inc("header_timeouts_total")
        self.force_close()

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        self._backlog = None
        super().connection_lost(exc)

    def discard_then_close(self, linger_s: float = 2.0) -> None:
        """After a final response: stop parsing what the client still sends, half-close our
        side (the response is flushed first) and close for good after ``linger_s``. Closing
        at once with unread input would reset the connection and could destroy the response
        before the client reads it; lingering the aiohttp way would keep parsing the body."""
        self._discarding = True
        self._backlog = None
        self._cancel_head_timer()
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
        self._loop.call_later(linger_s, self.force_close)

    def idle(self) -> bool:
        return (self.transport is not None and not self._request_in_progress
                and not self._messages)

    # -- malformed requests ------------------------------------------------------------
    def _make_error_handler(
        self, err_info: _ErrInfo
    ) -> Callable[[BaseRequest], Awaitable[web.StreamResponse]]:
        async def handler(request: BaseRequest) -> web.StreamResponse:
            return await self._edge.malformed(request, err_info)

        return handler


class EdgeServer(Server):
    """aiohttp's ``Server`` (the protocol factory) with the connection cap."""

    def __init__(self, base: Server, app: web.Application) -> None:
        super().__init__(base.request_handler, request_factory=base.request_factory,
                         handler_cancellation=base.handler_cancellation, loop=base._loop,
                         **base._kwargs)
        limits = app[appkeys.SETTINGS].server.limits
        self.app = app
        self.header_timeout_s = limits.header_read_timeout_s
        self.max_connections = limits.max_connections
        self._live: dict[RequestHandler, None] = {}  # insertion order = oldest first

    def __call__(self) -> RequestHandler:
        return EdgeRequestHandler(self, loop=self._loop, **self._kwargs)

    def metrics_inc(self, name: str, **labels: str) -> None:
        self.app[appkeys.METRICS].inc(name, 1.0, **labels)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._live[handler] = None
        if len(self._live) <= self.max_connections:
            return
        victim = next((h for h in self._live if h is not handler
                       and isinstance(h, EdgeRequestHandler) and h.idle()), None)
        if victim is not None:
            self.metrics_inc("connections_evicted_total")
            victim.force_close()
        else:
            self.metrics_inc("connections_refused_total")
            transport.close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self._live.pop(handler, None)
        super().connection_lost(handler, exc)

    async def malformed(self, request: BaseRequest, err_info: _ErrInfo) -> web.StreamResponse:
        reason = malformed_reason(err_info.exc)
        x = Exchange(request_id=new_request_id(), method="", path="",
                     source_ip=request.remote)
        log.warning("malformed HTTP request refused: request_id=%s reason=%s peer=%s",
                    x.request_id, reason, x.source_ip)
        self.metrics_inc("malformed_requests_total", reason=reason)
        err = BadRequest("malformed HTTP request", code=reason)
        doc = rejection_event("request.rejected", x, err)
        doc["what"] = {}  # nothing of the request line is trustworthy or needed
        x.terminal_recorded = True
        try:
            await self.app[appkeys.AUDIT].append(doc)
        except AuditUnavailable:
            self.metrics_inc("audit_write_failures_total")
            log.error("audit store could not record request.rejected for %s", x.request_id)
        header = self.app[appkeys.SETTINGS].server.request_id_header
        response = web.Response(status=err.status, body=orjson.dumps(to_body(err)),
                                content_type="application/json",
                                headers={header: x.request_id, "request-id": x.request_id})
        response.force_close()
        return response


class GatewayRunner(web.AppRunner):
    """``web.AppRunner`` serving the application through ``EdgeServer``."""

    async def _make_server(self) -> Server:
        base = await super()._make_server()
        return EdgeServer(base, self.app)


def _settle_heap() -> None:
    """Once listening: tune the cyclic garbage collector for a server's heap.

    ``gc.freeze()`` moves everything alive now (modules, the compiled policy, settings,
    pools) into the permanent generation, so no collection rescans it; and a young-generation
    threshold of 10,000 (default 700) lets a request's short-lived objects die by reference
    count before a collection looks at them. Cyclic garbage is still collected, just in
    larger, rarer passes (at most ~10,000 container objects wait for one). Measured with
    ``gc.callbacks`` and thread CPU time over 6,000 requests at concurrency 16: 57 us of
    collector CPU per request before, none after (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def run(app: web.Application, *, host: str, port: int, on_listening: Callable[[], None],
        reuse_port: bool = False, stop_on_readable: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM (``regogate serve``), then close every component.

    ``reuse_port``: bind with SO_REUSEPORT (the workers of ``serve --workers N`` share one
    port; the kernel spreads new connections). ``stop_on_readable``: a file descriptor whose
    readability means stop too (a worker's pipe to its supervisor: EOF when it died)."""

    async def main() -> None:
        runner = GatewayRunner(app, handler_cancellation=False, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
            _settle_heap()
            on_listening()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if stop_on_readable is not None:
                loop.add_reader(stop_on_readable, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
