"""Cached answers in and out of the canonical forms the pipeline already handles.

A hit becomes either a ``Completion`` (plain) or a ``ReplayStream`` of canonical
``chat.completion.chunk`` dicts that the existing relay encodes in the client's dialect and
checks like any provider stream. A provider stream is recorded by ``RecordingStream`` and
assembled into one canonical completion only when it reached its end.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from adapters.types import Served, Usage
from pep.routing.stream import choices_text


class ReplayStream:
    """A cached completion replayed as a stream (the interface of routing.stream.ChunkStream;
    it never waits, so it is cancel-safe and always ready)."""

    def __init__(self, body: dict[str, Any], usage: Usage, served: Served, *,
                 include_usage: bool, request_id: str) -> None:
        self.served = served
        self.usage: Usage | None = usage
        self.text = ""  # the answer text of the chunk __anext__ returned last
        self._chunks = iter(replay_chunks(body, usage, include_usage=include_usage,
                                          request_id=request_id))

    def ready(self) -> bool:
        return True

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            chunk = next(self._chunks)
        except StopIteration:
            raise StopAsyncIteration from None
        self.text = choices_text(chunk.get("choices") or ())
        return chunk

    async def aclose(self) -> None:
        return None


def replay_chunks(body: dict[str, Any], usage: Usage, *, include_usage: bool,
                  request_id: str) -> list[dict[str, Any]]:
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model")}
    chunks: list[dict[str, Any]] = []
    for choice in body.get("choices") or ():
        index = choice.get("index", 0)
        msg = choice.get("message") or {}
        delta: dict[str, Any] = {"role": msg.get("role", "assistant"), "content": ""}
        chunks.append({**base, "choices": [{"index": index, "delta": delta,
                                            "finish_reason": None}]})
        content = msg.get("content")
        if isinstance(content, str) and content:
            chunks.append({**base, "choices": [{"index": index, "delta": {"content": content},
                                                "finish_reason": None}]})
        calls = msg.get("tool_calls") or []
        if calls:
            chunks.append({**base, "choices": [{"index": index, "delta": {"tool_calls": [
                {"index": i, **call} for i, call in enumerate(calls)]}, "finish_reason": None}]})
        chunks.append({**base, "choices": [{"index": index, "delta": {},
                                            "finish_reason": choice.get("finish_reason") or "stop"}]})
    if include_usage:
        for chunk in chunks:
            chunk["usage"] = None
        chunks.append({**base, "choices": [], "usage": usage.to_openai()})
    return chunks


class RecordingStream:
    """Wraps a provider stream, keeping its chunks; ``complete`` once it reached its end.
    Cancel-safe as the stream it wraps: nothing changes before that stream returns."""

    def __init__(self, inner: Any, limit_chars: int) -> None:
        self._inner = inner
        self.served = inner.served
        self.chunks: list[dict[str, Any]] = []
        self.complete = False
        self._chars = 0
        self._limit = limit_chars
        self.too_big = False

    @property
    def usage(self) -> Usage | None:
        u: Usage | None = self._inner.usage
        return u

    @property
    def text(self) -> str:
        """The answer text of the chunk returned last (the inner stream's)."""
        t: str = self._inner.text
        return t

    def ready(self) -> bool:
        r: bool = self._inner.ready()
        return r

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            chunk: dict[str, Any] = await self._inner.__anext__()
        except StopAsyncIteration:
            self.complete = True
            raise
        if not self.too_big:
            for c in chunk.get("choices") or ():
                text = (c.get("delta") or {}).get("content")
                if isinstance(text, str):
                    self._chars += len(text)
            if self._chars > self._limit:
                self.too_big, self.chunks = True, []
            else:
                self.chunks.append(chunk)
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One canonical ``chat.completion`` from a stream's chunks (None if not one choice)."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    role, finish, model, created, ident = "assistant", None, None, 0, None
    for chunk in chunks:
        model = chunk.get("model", model)
        created = chunk.get("created", created)
        ident = chunk.get("id", ident)
        for c in chunk.get("choices") or ():
            if c.get("index", 0) != 0:
                return None
            delta = c.get("delta") or {}
            role = delta.get("role") or role
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(call.get("index", 0), {
                    "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            finish = c.get("finish_reason") or finish
    if finish is None:
        return None
    message: dict[str, Any] = {"role": role, "content": "".join(content) if content or not calls
                               else None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}
