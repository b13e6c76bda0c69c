"""Inbound API dialects: how a client's API (OpenAI, Anthropic) maps onto the canonical form.

A dialect converts the request body to the canonical OpenAI request, renders canonical
responses and stream chunks back in its own wire format, and shapes errors its SDK expects.
"""

from __future__ import annotations

from typing import Any, Protocol

from pep.errors import GatewayError


class StreamEncoder(Protocol):
    def encode(self, chunk: dict[str, Any]) -> bytes: ...

    def close(self, finish_reason: str | None = None) -> bytes:
        """Bytes that end the stream (e.g. ``data: [DONE]``)."""
        ...


class Dialect(Protocol):
    name: str  # "openai" | "anthropic"
    api: str  # PolicyInput request.api value

    def to_canonical(self, body: Any) -> Any: ...

    def render(self, completion: dict[str, Any]) -> dict[str, Any]: ...

    def stream_encoder(self, model: str) -> StreamEncoder: ...

    def error_body(self, err: GatewayError) -> dict[str, Any]: ...

    def stream_error(self, err: GatewayError) -> bytes:
        """An in-band error frame for a stream whose status line has already been sent."""
        ...
