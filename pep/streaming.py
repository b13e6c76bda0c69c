"""Relay a provider stream to the client in its dialect, with output checks and audit.

With the output decision on, nothing reaches the client before it was checked (GUIDE.md
3.14): text chunks are held back in a window bounded by ``policy.output_check_every_chars``
characters and ``policy.output_hold_ms`` milliseconds (counted from the oldest held chunk),
the answer so far is checked (incremental scan, pep.content.output) and only then is the
window written. Chunks without answer text (the role chunk, usage) pass at once when nothing
is held, so the time to first byte gains nothing; the first *text* waits at most the window.
A mid-stream deny writes the dialect's end-of-stream for a filtered answer (Chat Completions:
a content_filter final chunk and an ``error`` data frame; Responses: ``response.incomplete``
with reason content_filter; Anthropic: an ``error`` event) and drops the held window.

Whatever ends the stream -- completion, output policy cut, upstream failure or the client
going away -- the usage is recorded and one completion record is audited, with exactly what
was delivered (characters and SHA-256 of the delivered answer text). The stream's terminal
event ([DONE] / message_stop / response.completed, the filtered end, or an in-band error) is
sent only once that record is durable: a client that saw the stream end cleanly is never
missing its completion record, even if the gateway dies right after.

The stream is a ChunkStream (or the cache's replay or recording of one): the relay awaits
its ``__anext__`` in its own task, which must be cancel-safe (the held window's timer
cancels a wait), reads each chunk's answer text from its ``text`` and asks ``ready()``
before it would wait, so the chunks of one upstream read leave in one write.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any

from aiohttp import web

from adapters.types import Usage
from pep import appkeys
from pep.auditing import content_mode, event
from pep.errors import GatewayError, Unavailable
from pep.exchange import Exchange
from pep.inbound import Dialect
from pep.output import evaluate_output, output_denial, output_enabled
from pep.steps import audit, record_usage

log = logging.getLogger("regogate.streaming")

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


_WHITESPACE = re.compile(r"\s")
# A window is released up to its last whitespace: the unfinished word after it (where a key
# or token may be arriving piece by piece) stays held, up to this many characters and
# TAIL_HOLD_FACTOR times the window's time bound; then it is released as checked.
TAIL_MAX_CHARS = 256
TAIL_HOLD_FACTOR = 4


_END = object()
_TIMEOUT = object()


class _Upstream:
    """The relay reads its stream in its own task: no reader task, no future of ours per
    wait and no second wake-up per upstream read. A held window's deadline is a timer armed
    only while text is held and the next chunk is not there yet; it cancels the wait, which
    loses nothing because the stream's ``__anext__`` is cancel-safe (pep.routing.stream:
    what arrived stays in aiohttp's buffer), and the next wait continues where it was.

    The timer is ``asyncio.timeout_at`` reduced to what this one await needs (a handle and
    a flag, about half its cost, paid on every wait while text is held): a cancellation
    that is not the timer's, or that comes on top of it, propagates as it would."""

    __slots__ = ("stream", "_next", "_loop", "_task", "_fired")

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self._next = stream.__anext__
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None  # the request handler's task
        self._task = task
        self._fired = False

    def _fire(self) -> None:
        self._fired = True
        self._task.cancel()

    async def next(self, deadline: float | None) -> Any:
        """The next chunk; _END when the stream is over; _TIMEOUT when ``deadline`` (loop
        time) passed first."""
        try:
            if deadline is None or self.stream.ready():
                return await self._next()
            task = self._task
            before = task.cancelling()
            self._fired = False
            timer = self._loop.call_at(deadline, self._fire)
            try:
                return await self._next()
            except asyncio.CancelledError:
                if self._fired and task.uncancel() <= before:
                    return _TIMEOUT  # the timer's own cancellation, and nobody else's
                raise
            finally:
                timer.cancel()
        except StopAsyncIteration:
            return _END


class _Relay:
    """Per stream: the held window, what was delivered, and the writes."""

    def __init__(self, request: web.Request, x: Exchange, dialect: Dialect,
                 resp: web.StreamResponse, scanner: Any, hold_s: float) -> None:
        self.request, self.x, self.dialect, self.resp = request, x, dialect, resp
        self.encoder = dialect.stream_encoder(x.model_served or "")
        self.scanner = scanner
        self.hold_s = hold_s
        self.held: list[tuple[dict[str, Any], str, float]] = []  # chunk, its text, arrival
        self.deadline = 0.0  # when the held window must be checked and released
        self.parts: list[str] = []  # all answer text received
        self.delivered = 0  # how many of ``parts`` reached the client
        self.out: list[bytes] = []  # encoded chunks queued by ``send``, not yet written
        self.out_texts = 0  # how many of them carry answer text
        self.cut_by: Any = None

    def send(self, chunk: dict[str, Any], text: str) -> None:
        """Queue a chunk that needs no check (or is not held): it goes out with the next
        ``flush``, which runs before the relay waits for the upstream, so the chunks of one
        upstream read leave in one write."""
        self.out.append(self.encoder.encode(chunk))
        if text:
            self.out_texts += 1

    async def flush(self, tail: bytes = b"") -> None:
        """Write the queued chunks (and ``tail``) in one write; count what was delivered."""
        if not self.out and not tail:
            return
        data = b"".join(self.out) + tail if self.out else tail
        texts = self.out_texts
        self.out, self.out_texts = [], 0
        await self.resp.write(data)
        self._delivered(texts)

    def _delivered(self, texts: int) -> None:
        if texts:
            if not self.delivered:
                self._first_token()
            self.delivered += texts

    def _first_token(self) -> None:
        """Time to first token as the client sees it: the first text written to it."""
        self.request.app[appkeys.METRICS].observe(
            "time_to_first_token_seconds", time.perf_counter() - self.x.started,
            model=self.x.model_served or "")

    def hold(self, chunk: dict[str, Any], text: str, now: float) -> None:
        if not self.held:
            self.deadline = now + self.hold_s
        self.held.append((chunk, text, now))

    async def release(self, *, final: bool, now: float = 0.0) -> bool:
        """Check the answer so far; write the held window if allowed. False on a cut."""
        if self.scanner is not None and (self.held or final):
            self.scanner.checked()
            decision = await evaluate_output(self.request, self.x, self.scanner.text,
                                             self.scanner.findings(), final=final)
            if not decision.allow:
                self.cut_by = decision
                self.held = []
                return False
        keep = 0 if final else self._tail(now)
        held = self.held[: len(self.held) - keep]
        self.held = self.held[len(self.held) - keep :]
        if self.held:
            self.deadline = self.held[0][2] + self.hold_s * TAIL_HOLD_FACTOR
        # Queued chunks came before every held one (send queues only when nothing is held):
        # one write, in order.
        await self.flush(b"".join([self.encoder.encode(c) for c, _, _ in held]))
        if held:
            self._delivered(sum(1 for _, t, _ in held if t))
        return True

    def _tail(self, now: float) -> int:
        """How many trailing held chunks form an unfinished word that may stay held."""
        n, chars = 0, 0
        for _chunk, text, arrived in reversed(self.held):
            if not text or _WHITESPACE.search(text) is not None:
                break
            chars += len(text)
            if chars > TAIL_MAX_CHARS or now - arrived >= self.hold_s * TAIL_HOLD_FACTOR:
                return 0
            n += 1
        return n

    def cut(self) -> bytes:
        """The end of a stream the output decision denied, per the dialect's convention: Chat
        Completions a content_filter final chunk and an ``error`` frame; the Responses API a
        ``response.incomplete`` with reason content_filter (its documented outcome of a
        content filter); Anthropic an ``error`` event."""
        err = output_denial(self.request, self.cut_by)
        out = b""
        if self.dialect.name == "openai":
            out += self.encoder.encode(_filter_chunk(self.x))
        if self.dialect.api == "responses":
            return out + self.encoder.close("content_filter")
        return out + self.dialect.stream_error(err)

    def delivered_text(self) -> str:
        return "".join(self.parts[: self.delivered])


async def relay_stream(
    request: web.Request, x: Exchange, dialect: Dialect, stream: Any
) -> web.StreamResponse:
    app = request.app
    settings = app[appkeys.SETTINGS].policy
    resp = web.StreamResponse(headers=SSE_HEADERS)
    resp.headers[app[appkeys.SETTINGS].server.request_id_header] = x.request_id
    resp.headers["request-id"] = x.request_id
    await resp.prepare(request)
    inspector = app[appkeys.CONTENT]
    scanner = (inspector.output_scanner(settings.output_check_every_chars)
               if inspector is not None and output_enabled(request) else None)
    relay = _Relay(request, x, dialect, resp, scanner, settings.output_hold_ms / 1000)
    loop = asyncio.get_running_loop()
    upstream = _Upstream(stream)
    status, error = 200, None
    terminal = b""  # written once the completion record is durable (module docstring)
    try:
        while True:
            if relay.out and not stream.ready():
                await relay.flush()  # before waiting: nothing queued waits for the upstream
            chunk = await upstream.next(relay.deadline if relay.held else None)
            if chunk is _END:
                break
            if chunk is _TIMEOUT:
                # The held window's time bound passed before the next chunk: check, release.
                if not await relay.release(final=False, now=loop.time()):
                    break
                continue
            text = stream.text  # the chunk's answer text, computed once by the stream
            if text:
                relay.parts.append(text)
            if scanner is None or (not text and not relay.held):
                relay.send(chunk, text)
                continue
            now = loop.time()
            relay.hold(chunk, text, now)
            if scanner.feed(text) and not await relay.release(final=False, now=now):
                break
        if relay.cut_by is None:
            await relay.release(final=True)
        if relay.cut_by is not None:
            # What was queued carries no answer text (a check would have held it).
            await relay.flush()
            status = 403
            terminal = relay.cut()
        else:
            terminal = relay.encoder.close()
            # A dialect that keeps state (the Responses API's stored response) makes it
            # durable before the client sees the stream end, so a follow-up request that
            # continues it never races the write.
            on_complete = getattr(dialect, "on_complete", None)
            if on_complete is not None:
                await on_complete()
    except GatewayError as err:
        # After the first byte the status line is gone; report in-band, audit the cause.
        status, error = err.status, err
        try:
            await relay.flush()  # what was queued before the failure still goes out first
        except ConnectionResetError:
            status = 499
        app[appkeys.METRICS].inc("stream_errors_total", code=err.code)
        terminal = dialect.stream_error(err)
    except (ConnectionResetError, asyncio.CancelledError):
        status = 499  # client closed the connection
        app[appkeys.METRICS].inc("client_disconnects_total")
    finally:
        durable = await asyncio.shield(_finish(request, x, stream, relay, status, error))
    if terminal:
        if not durable:
            terminal = dialect.stream_error(Unavailable(
                "the audit store could not record the end of this answer",
                code="audit_unavailable"))
        await _write_quietly(resp, terminal)
    return resp


def _filter_chunk(x: Exchange) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{x.request_id}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": x.model_served,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
    }


async def _write_quietly(resp: web.StreamResponse, data: bytes) -> None:
    """The terminal event and the end of the chunked body in one write."""
    try:
        await resp.write_eof(data)
    except ConnectionResetError:
        pass


async def _finish(
    request: web.Request,
    x: Exchange,
    stream: Any,
    relay: _Relay,
    status: int,
    error: GatewayError | None,
) -> bool:
    try:
        await stream.aclose()
    except Exception:  # noqa: BLE001 - closing a broken upstream must not mask the outcome
        log.debug("error closing upstream stream for %s", x.request_id, exc_info=True)
    x.status = status
    text = "".join(relay.parts)
    x.outcome_status = status
    x.usage = stream.usage or Usage(
        prompt_tokens=x.req.estimated_tokens if x.req else 0,
        completion_tokens=(len(text) + 3) // 4,
        estimated=True,
    )
    await record_usage(request, x)
    delivered = relay.delivered_text()
    extra: dict[str, Any] = {
        "delivered_chars": len(delivered),
        "delivered_sha256": hashlib.sha256(delivered.encode()).hexdigest(),
    }
    if relay.cut_by is not None:
        extra["output_cut"] = [r.code for r in relay.cut_by.reasons]
    response = None if content_mode(x) == "none" else [text]
    return await audit(
        request,
        event("request.completion", x, status=status, error=error, response_content=response,
              extra=extra),
        required=False,
    )
