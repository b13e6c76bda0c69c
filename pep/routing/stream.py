"""ChunkStream: a provider stream as OpenAI ``chat.completion.chunk`` dicts.

The router always asks providers for usage; the usage-only chunk (and ``usage`` fields) reach
the client only when it asked with ``stream_options.include_usage``. When the provider
reports no usage, it is estimated from the text streamed (``Usage.estimated``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from adapters.types import Served, StreamTranslator, Usage
from pep.errors import GatewayError, UpstreamError, UpstreamTimeout

log = logging.getLogger("regogate.routing")


class ChunkStream:
    def __init__(
        self,
        source: AsyncIterator[bytes],
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
        self._source = source
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
            data = await self._source.__anext__()
        except StopAsyncIteration:
            self._eof = True
            self._pending.extend(self._translate(None))
            self._finalise()
            return
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(f"{self._label} stream went idle") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self._label} stream broke: {type(exc).__name__}") from exc
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
            choices = chunk.get("choices") or ()
            for c in choices:
                delta = c.get("delta") or {}
                text = delta.get("content")
                if isinstance(text, str):
                    self._chars += len(text)
                for call in delta.get("tool_calls") or ():
                    args = (call.get("function") or {}).get("arguments")
                    if isinstance(args, str):
                        self._chars += len(args)
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
