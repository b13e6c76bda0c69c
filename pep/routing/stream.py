"""ChunkStream: a provider stream as OpenAI ``chat.completion.chunk`` dicts.

The router always asks providers for usage; the usage-only chunk (and ``usage`` fields) reach
the client only when it asked with ``stream_options.include_usage``. When the provider
reports no usage, it is estimated from the text streamed (``Usage.estimated``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from adapters.types import Served, StreamTranslator, Usage
from pep.errors import GatewayError, UpstreamError, UpstreamTimeout


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
        """Read until the first chunk (or the end): errors here still allow a fallback."""
        while not self._pending and not self._eof:
            await self._pull()

    async def _pull(self) -> None:
        try:
            data = await self._source.__anext__()
        except StopAsyncIteration:
            self._eof = True
            self._pending.extend(self._translator.finish())
            self._finalise()
            return
        except asyncio.TimeoutError as exc:
            raise UpstreamTimeout(f"{self._label} stream went idle") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{self._label} stream broke: {type(exc).__name__}") from exc
        self._pending.extend(self._translator.feed(data))

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
