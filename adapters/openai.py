"""OpenAI Chat Completions / Embeddings: the canonical format, so translation is renaming.

Also the shared base for ``openai_compatible`` (vLLM, Ollama, LM Studio, Groq, Mistral,
Together, DeepSeek, ...), ``azure_openai`` and the in-process ``mock``.
Wire format: https://platform.openai.com/docs/api-reference/chat (streaming: SSE ``data:``
lines carrying ``chat.completion.chunk`` objects, terminated by ``data: [DONE]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from adapters import provider_errors
from adapters.canonical import check_supported
from adapters.sse import SSEParser
from adapters.types import Target, UpstreamRequest, Usage
from pep.errors import GatewayError, UpstreamError

DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Everything the Chat Completions API documents; unknown keys are refused, not forwarded,
# so an OpenAI-compatible server never silently ignores something the client relied on.
SUPPORTED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "n", "stop", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs", "seed", "user", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "metadata", "store", "service_tier",
    "reasoning_effort", "modalities", "audio", "prediction", "web_search_options",
    "functions", "function_call", "verbosity", "prompt_cache_key", "safety_identifier",
})
EMBEDDINGS_SUPPORTED = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


def validate(settings: Any) -> None:
    """Config-time check (raise ValueError); the public endpoint needs no base_url."""


def base_url(target: Target) -> str:
    return (target.settings.base_url or DEFAULT_BASE_URL).rstrip("/")


def headers(target: Target) -> dict[str, str]:
    h = {"content-type": "application/json", "accept": "application/json"}
    h.update(target.settings.headers)
    key = target.settings.api_key
    if key is not None:
        h["authorization"] = "Bearer " + key.get_secret_value()
    return h


def upstream_body(body: dict[str, Any], target: Target) -> dict[str, Any]:
    check_supported(body, SUPPORTED, target.settings.kind)
    out = dict(body)
    out["model"] = target.model
    if out.get("stream"):
        # Always ask for usage: the audit and quotas need it whatever the client asked.
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    else:
        out.pop("stream_options", None)
    return out


def to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    out = upstream_body(body, target)
    return UpstreamRequest(
        "POST", base_url(target) + "/chat/completions", headers(target),
        orjson.dumps(out), stream=bool(out.get("stream")),
    )


def _usage(doc: Mapping[str, Any]) -> Usage | None:
    u = doc.get("usage")
    if not isinstance(u, dict) or "prompt_tokens" not in u:
        return None
    return Usage(int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0))


def _loads(data: bytes | str, kind: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError(f"{kind} provider sent a response that is not JSON") from exc
    if not isinstance(doc, dict):
        raise UpstreamError(f"{kind} provider sent an unexpected response")
    return doc


def from_provider(data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    doc = _loads(data, target.settings.kind)
    if not isinstance(doc.get("choices"), list):
        raise UpstreamError(f"{target.settings.kind} provider sent a response without choices")
    doc["model"] = target.client_model
    return doc, _usage(doc)


class StreamTranslator:
    """OpenAI SSE -> chunk dicts (model renamed, usage captured)."""

    def __init__(self, target: Target) -> None:
        self._parser = SSEParser()
        self._target = target
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return self._chunks(self._parser.feed(data))

    def finish(self) -> list[dict[str, Any]]:
        return self._chunks(self._parser.finish())

    def _chunks(self, events: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        kind = self._target.settings.kind
        for ev in events:
            if ev.data == "[DONE]":
                continue
            chunk = _loads(ev.data, kind)  # orjson reads the str as it is
            if "error" in chunk:
                code = provider_errors.json_code(chunk, ("error", "code"), ("error", "type"))
                status = 429 if code in ("rate_limit_exceeded", "rate_limit_error") else 502
                raise provider_errors.from_status(kind, status, {}, provider_code=code,
                                                  in_stream=True)
            chunk["model"] = self._target.client_model
            usage = _usage(chunk)
            if usage is not None:
                self.usage = usage
            out.append(chunk)
        return out


def embeddings_to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    check_supported(body, EMBEDDINGS_SUPPORTED, target.settings.kind)
    out = dict(body)
    out["model"] = target.model
    return UpstreamRequest(
        "POST", base_url(target) + "/embeddings", headers(target), orjson.dumps(out)
    )


def embeddings_from_provider(data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    doc = _loads(data, target.settings.kind)
    if not isinstance(doc.get("data"), list):
        raise UpstreamError(f"{target.settings.kind} provider sent embeddings without data")
    doc["model"] = target.client_model
    u = doc.get("usage")
    usage = Usage(int(u.get("prompt_tokens") or 0), 0) if isinstance(u, dict) else None
    return doc, usage


def error_from_provider(
    status: int, hdrs: Mapping[str, str], data: bytes, target: Target
) -> GatewayError:
    code = provider_errors.json_code(data, ("error", "code"), ("error", "type"), ("code",),
                                     ("type",))
    return provider_errors.from_status(target.settings.kind, status, hdrs, provider_code=code,
                                       body_bytes=len(data))


class OpenAIAdapter:
    """Chat, streaming and embeddings over the OpenAI wire format."""

    kind = "openai"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)
    embeddings_to_provider = staticmethod(embeddings_to_provider)
    embeddings_from_provider = staticmethod(embeddings_from_provider)


ADAPTER = OpenAIAdapter()
