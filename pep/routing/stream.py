"""ChunkStream: a provider stream as OpenAI ``chat.completion.chunk`` dicts.

The router always asks providers for usage; the usage-only chunk (and ``usage`` fields) reach
the client only when it asked with ``stream_options.include_usage``. When the provider
reports no usage, it is estimated from the text streamed (``Usage.estimated``).

What the stream relay (pep.streaming) relies on: ``__anext__`` is cancel-safe (a wait that
is cancelled, as the relay's timer for a held window does, loses no bytes: the source is
aiohttp's ``readany``, which leaves what arrived in its buffer), ``text`` is the answer
text of the chunk returned last, computed once here, and ``ready`` says whether the next
chunk is there without waiting for the upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import aiohttp

from adapters.types import Served, StreamTranslator, Usage
from pep.errors import GatewayError, UpstreamError, UpstreamTimeout

log = logging.getLogger("regogate.routing")


def choices_text(choices: Iterable[Any]) -> str:
    """The answer text of a chunk's ``choices``: content and tool-call argument deltas, of
    every choice (n > 1 reaches an OpenAI client too). A choice, delta, call or function that
    is not an object raises (AttributeError): such a chunk is never relayed unread."""
    text = ""
    for c in choices:
        delta = c.get("delta") or {}
        content = delta.get("content")
        if isinstance(content, str):
            text += content
        for call in delta.get("tool_calls") or ():
            args = (call.get("function") or {}).get("arguments")
            if isinstance(args, str):
                text += args
    return text


class ChunkStream:
    def __init__(
        self,
        read: Callable[[], Awaitable[bytes]],
        release: Callable[[], None],
        translator: StreamTranslator,
        *,
        served: Served,
        include_usage: bool,
        prompt_estimate: int,
        label: str,
    ) -> None:
        self.served = served
        self.usage: Usage | None = None
        self.text = ""  # the answer text of the chunk __anext__ returned last
        self._read = read  # the next bytes of the body, b"" at its end; cancel-safe
        self._release = release
        self._translator = translator
        self._include_usage = include_usage
        self._prompt_estimate = prompt_estimate
        self._label = label
        self._pending: deque[dict[str, Any]] = deque()
        self._chars = 0
        self._eof = False
        self._closed = False

    async def prime(self) -> None:
        """Read until the first chunk: errors here still allow a fallback.

        A stream that ends before its first chunk is the provider's fault, never an empty
        answer: every provider we speak sends at least one event for any answer, so nothing
        usable came (typically a JSON body, or an error page, under a 200 to a streaming
        request). It fails here, while the client can still get a status and a JSON error.
        """
        while not self._pending and not self._eof:
            await self._pull()
        if not self._pending:
            raise UpstreamError(f"{self._label} ended its stream before sending any event")

    async def _pull(self) -> None:
        try:
            data = await self._read()
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(f"{self._label} stream went idle") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self._label} stream broke: {type(exc).__name__}") from exc
        if not data:
            self._eof = True
            self._pending.extend(self._translate(None))
            self._finalise()
            return
        self._pending.extend(self._translate(data))

    def _translate(self, data: bytes | None) -> list[dict[str, Any]]:
        """The translator's chunks; whatever it cannot read is the provider's fault (502).

        A translator raises GatewayError for what it recognises (a provider error event, a
        malformed frame); anything else it raises (a JSON, UTF-8 or framing library error on
        bytes that are not the provider's format) is the same fault, and must never become
        a 500 of ours.
        """
        try:
            return self._translator.feed(data) if data is not None else self._translator.finish()
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("%s sent a stream its adapter could not read (%s)", self._label,
                        type(exc).__name__, exc_info=True)
            raise UpstreamError(f"{self._label} sent a stream that could not be read") from exc

    def _finalise(self) -> None:
        usage = self._translator.usage
        if usage is None:
            usage = Usage(self._prompt_estimate, (self._chars + 3) // 4, estimated=True)
        self.usage = usage
        self._close()

    def ready(self) -> bool:
        """``__anext__`` would return without waiting for the upstream."""
        return bool(self._pending) or self._eof

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            while not self._pending:
                if self._eof:
                    raise StopAsyncIteration
                try:
                    await self._pull()
                except GatewayError:
                    self._close()
                    raise
            chunk = self._pending.popleft()
            choices = chunk.get("choices")
            if choices:
                text = self.text = choices_text(choices)
                self._chars += len(text)
            else:
                self.text = ""
            if not self._include_usage:
                if not choices and chunk.get("usage"):
                    continue
                chunk.pop("usage", None)
            elif "usage" not in chunk:
                chunk["usage"] = None  # as OpenAI sends every chunk but the usage-only last
            return chunk

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    async def aclose(self) -> None:
        self._close()
