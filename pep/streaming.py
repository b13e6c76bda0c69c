"""Relay a provider stream to the client in its dialect, with output checks and audit.

The first chunk is written as soon as it arrives (no buffering, so no added time to first
token). Whatever ends the stream -- completion, output policy cut, upstream failure or the
client going away -- the usage is recorded and one completion record is audited, and the
stream's terminal event is sent only once that record is durable.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from adapters.types import Usage
from pep import appkeys
from pep.auditing import content_mode, event
from pep.errors import GatewayError, Unavailable
from pep.exchange import Exchange
from pep.inbound import Dialect
from pep.output import evaluate_output, output_enabled
from pep.steps import audit, record_usage

log = logging.getLogger("regogate.streaming")

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _delta_text(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices")
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content")
    return content if isinstance(content, str) else ""


async def relay_stream(
    request: web.Request, x: Exchange, dialect: Dialect, stream: Any
) -> web.StreamResponse:
    app = request.app
    resp = web.StreamResponse(headers=SSE_HEADERS)
    resp.headers[app[appkeys.SETTINGS].server.request_id_header] = x.request_id
    resp.headers["request-id"] = x.request_id
    await resp.prepare(request)
    encoder = dialect.stream_encoder(x.model_served or "")
    inspector = app[appkeys.CONTENT]
    checking = output_enabled(request)
    scanner = (
        inspector.output_scanner(app[appkeys.SETTINGS].policy.output_check_every_chars)
        if checking
        else None
    )
    parts: list[str] = []
    status, error, cut_by = 200, None, None
    # The terminal event ([DONE] / message_stop, the content_filter end, or an in-band error)
    # is held until the completion record is durable: a client that saw the stream end
    # cleanly is never missing its completion record, even if the gateway dies right after.
    terminal = b""
    try:
        async for chunk in stream:
            delta = _delta_text(chunk)
            if delta:
                parts.append(delta)
                if scanner is not None and scanner.feed(delta):
                    cut_by = await _check(request, x, scanner, final=False)
                    if cut_by is not None:
                        break
            await resp.write(encoder.encode(chunk))
        if cut_by is None and scanner is not None:
            cut_by = await _check(request, x, scanner, final=True)
        if cut_by is not None:
            status = 403
            terminal = encoder.encode(_filter_chunk(x)) + encoder.close("content_filter")
        else:
            terminal = encoder.close()
            # A dialect that keeps state (the Responses API's stored response) makes it
            # durable before the client sees the stream end, so a follow-up request that
            # continues it never races the write.
            on_complete = getattr(dialect, "on_complete", None)
            if on_complete is not None:
                await on_complete()
    except GatewayError as err:
        # After the first byte the status line is gone; report in-band, audit the cause.
        status, error = err.status, err
        app[appkeys.METRICS].inc("stream_errors_total", code=err.code)
        terminal = dialect.stream_error(err)
    except (ConnectionResetError, asyncio.CancelledError):
        status = 499  # client closed the connection
        app[appkeys.METRICS].inc("client_disconnects_total")
    finally:
        durable = await asyncio.shield(_finish(request, x, stream, parts, status, error, cut_by))
    if terminal:
        if not durable:
            terminal = dialect.stream_error(Unavailable(
                "the audit store could not record the end of this answer",
                code="audit_unavailable"))
        await _write_quietly(resp, terminal)
    return resp


async def _check(request: web.Request, x: Exchange, scanner: Any, *, final: bool) -> Any:
    decision = await evaluate_output(request, x, scanner.text, scanner.findings(), final=final)
    return None if decision.allow else decision


def _filter_chunk(x: Exchange) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{x.request_id}",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": x.model_served,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}],
    }


async def _write_quietly(resp: web.StreamResponse, data: bytes) -> None:
    try:
        await resp.write(data)
    except ConnectionResetError:
        pass


async def _finish(
    request: web.Request,
    x: Exchange,
    stream: Any,
    parts: list[str],
    status: int,
    error: GatewayError | None,
    cut_by: Any,
) -> bool:
    try:
        await stream.aclose()
    except Exception:  # noqa: BLE001 - closing a broken upstream must not mask the outcome
        log.debug("error closing upstream stream for %s", x.request_id, exc_info=True)
    x.status = status
    text = "".join(parts)
    x.usage = stream.usage or Usage(
        prompt_tokens=x.req.estimated_tokens if x.req else 0,
        completion_tokens=(len(text) + 3) // 4,
        estimated=True,
    )
    await record_usage(request, x)
    extra: dict[str, Any] = {}
    if cut_by is not None:
        extra = {"output_cut": [r.code for r in cut_by.reasons]}
    response = None if content_mode(x) == "none" else [text]
    return await audit(
        request,
        event("request.completion", x, status=status, error=error, response_content=response,
              extra=extra),
        required=False,
    )
