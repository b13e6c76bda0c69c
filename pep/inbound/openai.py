"""The OpenAI Chat Completions dialect: canonical already, so mostly framing."""

from __future__ import annotations

from typing import Any

import orjson

from pep.errors import GatewayError, to_body


class OpenAIStreamEncoder:
    __slots__ = ()

    def encode(self, chunk: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def close(self, finish_reason: str | None = None) -> bytes:
        return b"data: [DONE]\n\n"


class OpenAIDialect:
    name = "openai"
    api = "chat.completions"

    def to_canonical(self, body: Any) -> Any:
        return body

    def render(self, completion: dict[str, Any]) -> dict[str, Any]:
        return completion

    def stream_encoder(self, model: str) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder()

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return to_body(err)

    def stream_error(self, err: GatewayError) -> bytes:
        # What OpenAI itself sends when a stream fails after it started.
        return b"data: " + orjson.dumps(to_body(err)) + b"\n\n"
