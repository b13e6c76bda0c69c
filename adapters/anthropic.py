"""Anthropic Messages API (https://docs.anthropic.com/en/api/messages), outbound.

Canonical OpenAI request -> ``POST {base}/v1/messages`` with ``x-api-key`` and
``anthropic-version``; ``message`` -> ``chat.completion``; the SSE events (``message_start``,
``content_block_start/delta/stop``, ``message_delta``, ``message_stop``, ``ping``, ``error``)
-> ``chat.completion.chunk`` dicts, tool_use blocks as streamed ``tool_calls``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from adapters import provider_errors
from adapters.canonical import (
    BASE,
    append_turn,
    check_supported,
    data_url,
    map_parts,
    max_tokens,
    require_messages,
    stop_list,
)
from adapters.sse import SSEParser
from adapters.types import Target, UpstreamRequest, Usage
from pep.errors import BadRequest, GatewayError, UpstreamError

DEFAULT_BASE_URL = "https://api.anthropic.com"
SUPPORTED = BASE | {
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
    "tool_choice", "parallel_tool_calls", "user", "response_format", "metadata",
}
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop",
          "model_context_window_exceeded": "length"}


def validate(settings: Any) -> None:
    if settings.api_key is None:
        raise ValueError("anthropic needs api_key")


def _image(url: str) -> dict[str, Any]:
    inline = data_url(url)
    if inline is not None:
        media, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": media,
                                            "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    return map_parts(content, where, "anthropic",
                     text=lambda t: {"type": "text", "text": t}, image=_image)


def _tool_input(arguments: Any) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise BadRequest("tool call arguments must be JSON", param="messages") from exc


def _messages(body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        append_turn(out, role, blocks)  # all tool results of one turn in one message

    for i, m in enumerate(require_messages(body)):
        role, where = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            system.append("\n".join(b["text"] for b in _blocks(m.get("content"), where)))
        elif role == "user":
            add("user", _blocks(m.get("content"), where))
        elif role == "assistant":
            blocks = _blocks(m.get("content"), where)
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                               "input": _tool_input(fn.get("arguments"))})
            add("assistant", blocks)
        elif role == "tool":
            text = "\n".join(b.get("text", "") for b in _blocks(m.get("content"), where))
            add("user", [{"type": "tool_result", "tool_use_id": m.get("tool_call_id"),
                          "content": text}])
        else:
            raise BadRequest(f"{where}: role {role!r} is not supported by anthropic",
                             param="messages")
    return ("\n\n".join(system) if system else None), out


def _tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    out: dict[str, Any] | None
    if choice is None:
        out = {"type": "auto"} if body.get("parallel_tool_calls") is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise BadRequest("unsupported tool_choice", param="tool_choice")
    # disable_parallel_tool_use exists on auto/any/tool only; {"type": "none"} has no fields.
    if out is not None and out["type"] != "none" and body.get("parallel_tool_calls") is False:
        out["disable_parallel_tool_use"] = True
    return out


def request_body(body: dict[str, Any], target: Target) -> dict[str, Any]:
    check_supported(body, SUPPORTED, "anthropic")
    rf = (body.get("response_format") or {}).get("type")
    if rf not in (None, "text"):
        raise BadRequest("response_format json is not supported by anthropic",
                         param="response_format", code="unsupported_parameter")
    if body.get("metadata"):
        raise BadRequest("metadata is not supported by anthropic", param="metadata",
                         code="unsupported_parameter")
    system, messages = _messages(body)
    out: dict[str, Any] = {
        "model": target.model, "messages": messages,
        "max_tokens": max_tokens(body) or target.settings.default_max_tokens,
    }
    if system:
        out["system"] = system
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = stop_list(body)
    if stop:
        out["stop_sequences"] = stop
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])}
    if body.get("tools"):
        out["tools"] = [
            {"name": f["name"], "description": f.get("description", ""),
             "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
            for f in (t.get("function") or {} for t in body["tools"])
        ]
    choice = _tool_choice(body)
    if choice is not None:
        out["tool_choice"] = choice
    if body.get("stream"):
        out["stream"] = True
    return out


def to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    out = request_body(body, target)
    ps = target.settings
    headers = {"content-type": "application/json", "anthropic-version": ps.anthropic_version,
               **ps.headers, "x-api-key": ps.api_key.get_secret_value()}
    base = (ps.base_url or DEFAULT_BASE_URL).rstrip("/")
    return UpstreamRequest("POST", base + "/v1/messages", headers, orjson.dumps(out),
                           stream=bool(out.get("stream")))


def _usage(u: Mapping[str, Any]) -> Usage:
    prompt = sum(int(u.get(k) or 0) for k in
                 ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return Usage(prompt, int(u.get("output_tokens") or 0))


def from_provider(data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("anthropic provider sent a response that is not JSON") from exc
    content = doc.get("content") if isinstance(doc, dict) else None
    if not isinstance(content, list):
        # The Messages API always answers `content` (a list, empty for no text).
        raise UpstreamError("anthropic provider sent a response without content")
    texts, calls = [], []
    for block in content:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": orjson.dumps(block.get("input")).decode()}})
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(texts) if texts or not calls else None,
                               "refusal": None}
    if calls:
        message["tool_calls"] = calls
    usage = _usage(doc["usage"]) if isinstance(doc.get("usage"), dict) else None
    out = {
        "id": "chatcmpl-" + str(doc.get("id", "")), "object": "chat.completion", "created": 0,
        "model": target.client_model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": FINISH.get(doc.get("stop_reason") or "", "stop")}],
    }
    if usage is not None:
        out["usage"] = usage.to_openai()
    return out, usage


class StreamTranslator:
    def __init__(self, target: Target) -> None:
        self._parser = SSEParser()
        self._model = target.client_model
        self._id = "chatcmpl-anthropic"
        self._tool_index: dict[int, int] = {}  # anthropic block index -> openai tool index
        self._input: dict[str, Any] = {}
        self.usage: Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": self._id, "object": "chat.completion.chunk", "created": 0,
                "model": self._model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [c for ev in self._parser.feed(data) for c in self._event(ev.event, ev.data)]

    def finish(self) -> list[dict[str, Any]]:
        return [c for ev in self._parser.finish() for c in self._event(ev.event, ev.data)]

    def _event(self, name: str | None, data: str) -> list[dict[str, Any]]:
        doc = orjson.loads(data) if data else {}
        kind = doc.get("type", name)
        if kind == "message_start":
            msg = doc.get("message") or {}
            self._id = "chatcmpl-" + str(msg.get("id", ""))
            self._input = msg.get("usage") or {}
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = doc.get("content_block") or {}
            if block.get("type") == "tool_use":
                idx = self._tool_index.setdefault(doc.get("index", 0), len(self._tool_index))
                return [self._chunk({"tool_calls": [{
                    "index": idx, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}]})]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = doc.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                idx = self._tool_index.get(doc.get("index", 0), 0)
                return [self._chunk({"tool_calls": [{
                    "index": idx, "function": {"arguments": delta.get("partial_json", "")}}]})]
            return []  # thinking / signature deltas have no canonical form
        if kind == "message_delta":
            usage = {**self._input, **(doc.get("usage") or {})}
            self.usage = _usage(usage)
            stop = (doc.get("delta") or {}).get("stop_reason")
            u = self.usage
            return [self._chunk({}, FINISH.get(stop or "", "stop")),
                    {**self._chunk({}), "choices": [],
                     "usage": u.to_openai()}]
        if kind == "error":
            err = doc.get("error") or {}
            status = 429 if err.get("type") == "rate_limit_error" else 529
            raise provider_errors.from_status("anthropic", status, {},
                                              provider_code=err.get("type"), in_stream=True)
        return []  # ping, content_block_stop, message_stop


def error_from_provider(
    status: int, hdrs: Mapping[str, str], data: bytes, target: Target
) -> GatewayError:
    code = provider_errors.json_code(data, ("error", "type"))
    return provider_errors.from_status("anthropic", status, hdrs, provider_code=code,
                                       body_bytes=len(data))


class AnthropicAdapter:
    """Chat and streaming over the Messages API (no embeddings API)."""

    kind = "anthropic"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)


ADAPTER = AnthropicAdapter()
