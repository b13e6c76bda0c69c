"""The Anthropic Messages API dialect (``POST /v1/messages``) on top of the canonical form.

Request: https://docs.anthropic.com/en/api/messages -> canonical OpenAI Chat Completions.
Response: canonical ``chat.completion`` -> Anthropic ``message``.
Stream: canonical chunks -> Anthropic SSE events (``message_start``, ``content_block_start``,
``ping``, ``content_block_delta`` (``text_delta`` / ``input_json_delta``),
``content_block_stop``, ``message_delta``, ``message_stop``; ``error`` in-band).

Anything the canonical form cannot carry (``top_k``, ``thinking``, documents, server tools)
is a 400 naming the field, never dropped. ``cache_control`` hints are accepted and ignored:
they change cost, not the answer.
"""

from __future__ import annotations

from typing import Any

import orjson

from pep.errors import BadRequest, GatewayError, UpstreamError

_TOP_LEVEL = frozenset({
    "model", "messages", "max_tokens", "system", "stop_sequences", "stream", "temperature",
    "top_p", "metadata", "tools", "tool_choice",
})
_STOP_REASON = {
    "stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
    "function_call": "tool_use", "content_filter": "refusal",
}
_ERROR_TYPE = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    503: "overloaded_error",
}


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param)


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "text":
                raise _bad(f"{where}: only text blocks are supported here", where)
            texts.append(str(block.get("text", "")))
        return "\n".join(texts)
    raise _bad(f"{where} must be a string or an array of text blocks", where)


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    src = block.get("source") or {}
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type')};base64,{src.get('data')}"
    elif src.get("type") == "url" and isinstance(src.get("url"), str):
        url = src["url"]
    else:
        raise _bad(f"{where}: image source must be base64 or url", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array", where)
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "tool_result":
            text = _text_of(block.get("content", ""), at + ".content")
            if block.get("is_error"):
                text = "[tool error] " + text
            tools.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id")),
                          "content": text})
        else:
            raise _bad(f"{at}: content block type {kind!r} is not supported", at)
    out = tools
    if parts:
        simple = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts)
                    if simple else parts})
    return out


def _assistant(content: Any, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array", where)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            calls.append({"id": str(block.get("id")), "type": "function", "function": {
                "name": str(block.get("name")),
                "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        else:
            raise _bad(f"{at}: content block type {kind!r} is not supported", at)
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools must be an array", "tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or (
                t.get("type") not in (None, "custom")):
            raise _bad(f"tools[{i}]: only custom tools with a name are supported", "tools")
        fn: dict[str, Any] = {"name": t["name"],
                              "parameters": t.get("input_schema") or {"type": "object"}}
        if t.get("description"):
            fn["description"] = t["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, out: dict[str, Any]) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad("tool_choice must be auto, any, none or tool with a name", "tool_choice")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


def to_canonical(body: Any) -> dict[str, Any]:
    """Anthropic Messages request -> canonical OpenAI Chat Completions request."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object", "body")
    for key in body:
        if key not in _TOP_LEVEL:
            raise _bad(f"parameter {key!r} is not supported by this gateway", key)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("'model' is required", "model")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("'max_tokens' is required and must be a positive integer", "max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    out_msgs: list[dict[str, Any]] = []
    if body.get("system") is not None:
        out_msgs.append({"role": "system", "content": _text_of(body["system"], "system")})
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = m.get("role") if isinstance(m, dict) else None
        if role == "user":
            out_msgs.extend(_user(m.get("content"), where))
        elif role == "assistant":
            out_msgs.append(_assistant(m.get("content"), where))
        else:
            raise _bad(f"{where}.role must be 'user' or 'assistant'", where)
    out: dict[str, Any] = {"model": model, "messages": out_msgs, "max_tokens": max_tokens}
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences") is not None:
        out["stop"] = body["stop_sequences"]
    meta = body.get("metadata")
    if isinstance(meta, dict) and meta.get("user_id") is not None:
        out["user"] = str(meta["user_id"])
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        _tool_choice(body["tool_choice"], out)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # message_delta carries usage
    return out


def _message_id(completion_id: Any) -> str:
    cid = str(completion_id or "gateway")
    return cid if cid.startswith("msg_") else "msg_" + cid


def _tool_input(arguments: Any) -> Any:
    try:
        return orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("the model produced tool arguments that are not JSON") from exc


def from_canonical(completion: dict[str, Any]) -> dict[str, Any]:
    """Canonical ``chat.completion`` -> Anthropic ``message``."""
    choice = (completion.get("choices") or [{}])[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(msg.get("content"), str) and msg["content"]:
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                        "input": _tool_input(fn.get("arguments"))})
    usage = completion.get("usage") or {}
    return {
        "id": _message_id(completion.get("id")), "type": "message", "role": "assistant",
        "model": completion.get("model"), "content": content,
        "stop_reason": _STOP_REASON.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": int(usage.get("prompt_tokens") or 0),
                  "output_tokens": int(usage.get("completion_tokens") or 0)},
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicStreamEncoder:
    """Per request: canonical chunks in, Anthropic SSE event bytes out."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._started = False
        self._block = -1  # index of the open content block, -1 when none
        self._block_key: Any = None  # "text" or the OpenAI tool_call index
        self._stop = "end_turn"
        self._usage = {"input_tokens": 0, "output_tokens": 0}

    def _start(self, chunk_id: Any) -> bytes:
        self._started = True
        message: dict[str, Any] = {"id": _message_id(chunk_id), "type": "message", "role": "assistant",
                   "model": self._model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": dict(self._usage)}
        return _event("message_start", {"type": "message_start", "message": message}) + \
            _event("ping", {"type": "ping"})

    def _open(self, key: Any, block: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._block += 1
        self._block_key = key
        return out + _event("content_block_start", {"type": "content_block_start",
                                                     "index": self._block,
                                                     "content_block": block})

    def _close_block(self) -> bytes:
        if self._block_key is None:
            return b""
        self._block_key = None
        return _event("content_block_stop", {"type": "content_block_stop", "index": self._block})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return _event("content_block_delta", {"type": "content_block_delta",
                                               "index": self._block, "delta": delta})

    def encode(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self._started else self._start(chunk.get("id"))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = {"input_tokens": int(usage.get("prompt_tokens") or 0),
                           "output_tokens": int(usage.get("completion_tokens") or 0)}
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._block_key != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": text})
            for call in delta.get("tool_calls") or ():
                idx = ("tool", call.get("index", 0))
                fn = call.get("function") or {}
                if self._block_key != idx:
                    out += self._open(idx, {"type": "tool_use", "id": call.get("id"),
                                            "name": fn.get("name"), "input": {}})
                if fn.get("arguments"):
                    out += self._delta({"type": "input_json_delta",
                                        "partial_json": fn["arguments"]})
            if choice.get("finish_reason"):
                self._stop = _STOP_REASON.get(choice["finish_reason"], "end_turn")
        return out

    def close(self, finish_reason: str | None = None) -> bytes:
        out = b"" if self._started else self._start(None)
        if finish_reason is not None:
            self._stop = _STOP_REASON.get(finish_reason, "end_turn")
        out += self._close_block()
        out += _event("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": self._stop,
                                                   "stop_sequence": None},
                                         "usage": dict(self._usage)})
        return out + _event("message_stop", {"type": "message_stop"})


def error_body(err: GatewayError) -> dict[str, Any]:
    """Anthropic's error shape: {"type": "error", "error": {"type", "message"}}."""
    kind = _ERROR_TYPE.get(err.status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}


def stream_error(err: GatewayError) -> bytes:
    """The in-band ``error`` event for a failure after the stream started."""
    return _event("error", error_body(err))


class AnthropicDialect:
    name = "anthropic"
    api = "messages"

    def to_canonical(self, body: Any) -> dict[str, Any]:
        return to_canonical(body)

    def render(self, completion: dict[str, Any]) -> dict[str, Any]:
        return from_canonical(completion)

    def stream_encoder(self, model: str) -> AnthropicStreamEncoder:
        return AnthropicStreamEncoder(model)

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return error_body(err)

    def stream_error(self, err: GatewayError) -> bytes:
        return stream_error(err)
