"""The OpenAI Responses API dialect (``POST /v1/responses``) on top of the canonical form.

Request: a Responses ``create`` body (``instructions``, ``input`` as a string or a list of
items: messages, ``function_call`` and ``function_call_output``; function tools,
``tool_choice``, ``text.format``, ``max_output_tokens``, ``reasoning.effort`` ...) plus the
conversation kept for ``previous_response_id`` -> canonical OpenAI Chat Completions request.
Response: canonical ``chat.completion`` -> a ``response`` object.
Stream: canonical chunks -> the typed semantic events (``response.created``,
``response.in_progress``, ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` / ``.done``, ``response.function_call_arguments.delta`` /
``.done``, ``response.content_part.done``, ``response.output_item.done``, then
``response.completed`` or ``response.incomplete``; ``error`` + ``response.failed`` in-band),
each with its ``sequence_number``.

Every provider is reached through the canonical form, so the Responses API works on all of
them. Anything the canonical form cannot carry (built-in tools, reasoning summaries,
``include``, background mode, ``truncation: auto`` ...) is a 400 naming the field, never
dropped. ``prompt_cache_key`` is accepted and ignored: it changes cost, not the answer.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pep.errors import BadRequest, GatewayError, to_body

_TOP_LEVEL = frozenset({
    "model", "input", "instructions", "stream", "stream_options", "max_output_tokens",
    "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
    "metadata", "store", "previous_response_id", "user", "safety_identifier",
    "prompt_cache_key", "truncation", "include", "background", "service_tier",
})
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param, code="unsupported_parameter"
                      if "not supported" in message else None)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# -- request -------------------------------------------------------------------------------


def _parts(content: Any, where: str, role: str) -> str | list[dict[str, Any]]:
    """Responses message content -> canonical content (a string when it is all text)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or an array of content parts", where)
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "refusal"):
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise _bad(f"{at} needs a string '{'refusal' if kind == 'refusal' else 'text'}'",
                           at)
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and role == "user":
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise _bad(f"{at}: input_image needs an 'image_url' (file_id is not supported)",
                           at)
            image: dict[str, Any] = {"url": url}
            if part.get("detail") not in (None, "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _bad(f"{at}: content part type {kind!r} is not supported by this gateway", at)
    if all(p["type"] == "text" for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


def _function_call(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(args, str):
        raise _bad(f"{where}: a function_call needs string 'call_id', 'name' and 'arguments'",
                   where)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _tool_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise _bad(f"{where}: a function_call_output needs a string 'call_id'", where)
    if isinstance(output, list):
        text = _parts(output, where, "tool")
        if not isinstance(text, str):
            raise _bad(f"{where}.output: only text output is supported", where)
        output = text
    if not isinstance(output, str):
        raise _bad(f"{where}.output must be a string or an array of text parts", where)
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def input_messages(raw: Any) -> list[dict[str, Any]]:
    """The ``input`` field -> canonical messages (function calls merged into the assistant
    turn they belong to, as Chat Completions wants them)."""
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise _bad("'input' must be a string or a non-empty array of items", "input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object", where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in _MESSAGE_ROLES:
                raise _bad(f"{where}.role must be user, assistant, system or developer", where)
            out.append({"role": role, "content": _parts(item.get("content"), where, role)})
        elif kind == "function_call":
            call = _function_call(item, where)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append(_tool_output(item, where))
        else:
            raise _bad(f"{where}: input item type {kind!r} is not supported by this gateway",
                       where)
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(
                t.get("name"), str):
            raise _bad(f"tools[{i}]: only function tools with a name are supported by this "
                       "gateway", "tools")
        fn: dict[str, Any] = {"name": t["name"],
                              "parameters": t.get("parameters") or {"type": "object"}}
        if t.get("description") is not None:
            fn["description"] = t["description"]
        if t.get("strict") is not None:
            fn["strict"] = t["strict"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(
            choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice must be auto, none, required or a function by name", "tool_choice")


def _text_format(text: Any, out: dict[str, Any]) -> None:
    if not isinstance(text, dict):
        raise _bad("'text' must be an object", "text")
    for key in text:
        if key not in ("format", "verbosity"):
            raise _bad(f"text.{key} is not supported by this gateway", "text")
    fmt = text.get("format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        pass
    elif kind == "json_object":
        out["response_format"] = {"type": "json_object"}
    elif kind == "json_schema":
        if not isinstance(fmt.get("name"), str) or not isinstance(fmt.get("schema"), dict):
            raise _bad("text.format json_schema needs a 'name' and a 'schema' object", "text")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description")
                  if fmt.get(k) is not None}
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise _bad(f"text.format type {kind!r} is not supported", "text")
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]


def _reasoning(reasoning: Any, out: dict[str, Any]) -> None:
    if not isinstance(reasoning, dict):
        raise _bad("'reasoning' must be an object", "reasoning")
    for key, value in reasoning.items():
        if key == "effort":
            if value is not None:
                out["reasoning_effort"] = value
        elif value is not None:
            raise _bad(f"reasoning.{key} is not supported by this gateway (only effort)",
                       "reasoning")


def check_metadata(meta: Any) -> dict[str, str] | None:
    if meta is None:
        return None
    if (not isinstance(meta, dict) or len(meta) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in meta.items())):
        raise BadRequest("'metadata' must map at most 16 keys (64 chars) to strings "
                         "(512 chars)", param="metadata")
    return meta


def _check_neutral(body: dict[str, Any]) -> None:
    if body.get("include") not in (None, []):
        raise _bad("'include' is not supported by this gateway", "include")
    if body.get("truncation") not in (None, "disabled"):
        raise _bad("truncation 'auto' is not supported by this gateway", "truncation")
    if body.get("background") not in (None, False):
        raise _bad("background responses are not supported by this gateway", "background")
    so = body.get("stream_options")
    if so is not None and (not isinstance(so, dict) or set(so) - {"include_obfuscation"}):
        raise _bad("stream_options: only include_obfuscation is supported", "stream_options")
    if not isinstance(body.get("store", True), bool):
        raise BadRequest("'store' must be a boolean", param="store")
    prev = body.get("previous_response_id")
    if prev is not None and not isinstance(prev, str):
        raise BadRequest("'previous_response_id' must be a string", param="previous_response_id")


def to_canonical(body: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """Responses request (+ the stored conversation it continues) -> canonical request.
    Forbidden keys were refused before this, in pep.validation (one list, one step)."""
    for key in body:
        if key not in _TOP_LEVEL:
            raise _bad(f"parameter {key!r} is not supported by this gateway", key)
    _check_neutral(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _bad("'instructions' must be a string", "instructions")
        messages.append({"role": "system", "content": instructions})
    messages.extend(history)
    messages.extend(input_messages(body.get("input")))
    out: dict[str, Any] = {"model": model, "messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "parallel_tool_calls", "service_tier"):
        if body.get(key) is not None:
            out[key] = body[key]
    user = body.get("safety_identifier") or body.get("user")
    if user is not None:
        out["user"] = user
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("text") is not None:
        _text_format(body["text"], out)
    if body.get("reasoning") is not None:
        _reasoning(body["reasoning"], out)
    check_metadata(body.get("metadata"))
    stream = body.get("stream", False)
    if stream is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # response.completed carries usage
    elif stream not in (False, None):
        raise BadRequest("'stream' must be a boolean", param="stream")
    return out


# -- response ------------------------------------------------------------------------------


def output_items(message: dict[str, Any], status: str = "completed",
                 ids: Callable[[str], str] = new_id) -> list[dict[str, Any]]:
    """A canonical assistant message -> Responses output items."""
    items: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        items.append(message_item(text, status, ids("msg")))
    for call in message.get("tool_calls") or ():
        fn = call.get("function") or {}
        items.append(function_item(str(call.get("id") or ids("call")), str(fn.get("name")),
                                   str(fn.get("arguments") or ""), status, ids("fc")))
    return items


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(text: str, status: str, item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("msg"), "status": status, "type": "message",
            "role": "assistant", "content": [text_part(text)]}


def function_item(call_id: str, name: str, arguments: str, status: str,
                  item_id: str | None = None) -> dict[str, Any]:
    return {"id": item_id or new_id("fc"), "status": status, "type": "function_call",
            "call_id": call_id, "name": name, "arguments": arguments}


def assistant_message(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Responses output items -> the canonical assistant turn kept for the next request."""
    texts = [p["text"] for it in items if it["type"] == "message" for p in it["content"]]
    calls = [{"id": it["call_id"], "type": "function",
              "function": {"name": it["name"], "arguments": it["arguments"]}}
             for it in items if it["type"] == "function_call"]
    msg: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def items_of_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Canonical messages -> Responses items (what ``input_items`` lists)."""
    items: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            items.append({"id": new_id("fco"), "type": "function_call_output",
                          "call_id": m.get("tool_call_id"), "output": m.get("content"),
                          "status": "completed"})
            continue
        content = m.get("content")
        kind = "output_text" if role == "assistant" else "input_text"
        if isinstance(content, str) and content:
            parts: list[dict[str, Any]] = [{"type": kind, "text": content}]
        elif isinstance(content, list):
            parts = [{"type": kind, "text": p["text"]} if p.get("type") == "text" else
                     _image_item(p.get("image_url") or {}) for p in content]
        else:
            parts = []
        if parts:
            items.append({"id": new_id("msg"), "type": "message", "role": role,
                          "status": "completed", "content": parts})
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            items.append(function_item(str(call.get("id")), str(fn.get("name")),
                                       str(fn.get("arguments") or ""), "completed"))
    return items


def _image_item(image: dict[str, Any]) -> dict[str, Any]:
    return {"type": "input_image", "image_url": image.get("url"),
            "detail": image.get("detail", "auto")}


def usage_doc(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    inp, out = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": inp, "input_tokens_details": {"cached_tokens": int(cached)},
            "output_tokens": out, "output_tokens_details": {"reasoning_tokens": int(reasoning)},
            "total_tokens": inp + out}


@dataclass(slots=True)
class ResponseContext:
    """What a ``response`` object echoes from its request, fixed when the request arrives."""

    body: dict[str, Any]
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    model: str = ""
    new_id: Callable[[str], str] = new_id  # item ids (injectable for golden wire tests)
    clock: Callable[[], float] = time.time

    def envelope(self, status: str, output: list[dict[str, Any]],
                 usage: dict[str, Any] | None, finish_reason: str | None = None,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
        b = self.body
        reason = _INCOMPLETE.get(finish_reason or "")
        if reason is not None and status == "completed":
            status = "incomplete"
        text_cfg: dict[str, Any] = b["text"] if isinstance(b.get("text"), dict) else {}
        reasoning: dict[str, Any] = b["reasoning"] if isinstance(b.get("reasoning"), dict) else {}
        done = status in ("completed", "incomplete")
        return {
            "id": self.response_id, "object": "response", "created_at": self.created_at,
            "status": status, "completed_at": int(self.clock()) if done else None,
            "error": error,
            "incomplete_details": {"reason": reason} if status == "incomplete" else None,
            "instructions": b.get("instructions"), "max_output_tokens": b.get("max_output_tokens"),
            "model": self.model or b.get("model"), "output": output,
            "parallel_tool_calls": b.get("parallel_tool_calls", True),
            "previous_response_id": b.get("previous_response_id"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": None},
            "temperature": b.get("temperature"),
            "text": {"format": text_cfg.get("format") or {"type": "text"}},
            "tool_choice": b.get("tool_choice", "auto"), "tools": b.get("tools") or [],
            "top_p": b.get("top_p"), "truncation": "disabled", "usage": usage,
            "user": b.get("user"), "metadata": b.get("metadata") or {},
        }

    def render(self, completion: dict[str, Any]) -> dict[str, Any]:
        self.model = str(completion.get("model") or self.model)
        choice = (completion.get("choices") or [{}])[0]
        reason = choice.get("finish_reason")
        status = "incomplete" if reason in _INCOMPLETE else "completed"
        items = output_items(choice.get("message") or {}, status, self.new_id)
        return self.envelope("completed", items, usage_doc(completion.get("usage")), reason)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class ResponsesStreamEncoder:
    """Per request: canonical chunks in, Responses semantic events out. Keeps the output
    items it has announced so ``response.completed`` carries the whole response."""

    def __init__(self, ctx: ResponseContext) -> None:
        self._ctx = ctx
        self._seq = 0
        self._started = False
        self.items: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item receiving deltas
        self._open_key: Any = None  # "text" or ("tool", index)
        self._usage: dict[str, Any] | None = None
        self._finish: str | None = None
        self.final: dict[str, Any] | None = None  # the response as response.completed sent it

    def _emit(self, name: str, data: dict[str, Any]) -> bytes:
        doc = {"type": name, **data, "sequence_number": self._seq}
        self._seq += 1
        return _event(name, doc)

    def _start(self) -> bytes:
        self._started = True
        snapshot = self._ctx.envelope("in_progress", [], None)
        return (self._emit("response.created", {"response": snapshot})
                + self._emit("response.in_progress", {"response": snapshot}))

    def _close_item(self, status: str = "completed") -> bytes:
        item, self._open, self._open_key = self._open, None, None
        if item is None:
            return b""
        index = len(self.items) - 1
        item["status"] = status
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            out += self._emit("response.output_text.done", {
                "item_id": item["id"], "output_index": index, "content_index": 0,
                "text": part["text"], "logprobs": []})
            out += self._emit("response.content_part.done", {
                "item_id": item["id"], "output_index": index, "content_index": 0,
                "part": part})
        else:
            out += self._emit("response.function_call_arguments.done", {
                "item_id": item["id"], "output_index": index, "name": item["name"],
                "arguments": item["arguments"]})
        return out + self._emit("response.output_item.done", {"output_index": index,
                                                              "item": item})

    def _open_item(self, key: Any, item: dict[str, Any]) -> bytes:
        out = self._close_item()
        self.items.append(item)
        self._open, self._open_key = item, key
        announced = {**item, "content": []} if item["type"] == "message" else dict(item)
        out += self._emit("response.output_item.added", {"output_index": len(self.items) - 1,
                                                         "item": announced})
        if item["type"] == "message":
            out += self._emit("response.content_part.added", {
                "item_id": item["id"], "output_index": len(self.items) - 1,
                "content_index": 0, "part": text_part("")})
        return out

    def encode(self, chunk: dict[str, Any]) -> bytes:
        out = b"" if self._started else self._start()
        if isinstance(chunk.get("usage"), dict):
            self._usage = usage_doc(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self._open_key != "text":
                    out += self._open_item("text", message_item("", "in_progress",
                                                                self._ctx.new_id("msg")))
                assert self._open is not None
                self._open["content"][0]["text"] += text
                out += self._emit("response.output_text.delta", {
                    "item_id": self._open["id"], "output_index": len(self.items) - 1,
                    "content_index": 0, "delta": text, "logprobs": []})
            for call in delta.get("tool_calls") or ():
                key = ("tool", call.get("index", 0))
                fn = call.get("function") or {}
                if self._open_key != key:
                    out += self._open_item(key, function_item(
                        str(call.get("id") or self._ctx.new_id("call")),
                        str(fn.get("name") or ""), "", "in_progress", self._ctx.new_id("fc")))
                args = fn.get("arguments")
                if isinstance(args, str) and args:
                    assert self._open is not None
                    self._open["arguments"] += args
                    out += self._emit("response.function_call_arguments.delta", {
                        "item_id": self._open["id"], "output_index": len(self.items) - 1,
                        "delta": args})
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return out

    def close(self, finish_reason: str | None = None) -> bytes:
        out = b"" if self._started else self._start()
        if finish_reason is not None:
            self._finish = finish_reason
        incomplete = self._finish in _INCOMPLETE
        out += self._close_item("incomplete" if incomplete else "completed")
        self.final = self._ctx.envelope("completed", self.items, self._usage, self._finish)
        name = "response.incomplete" if self.final["status"] == "incomplete" else \
            "response.completed"
        return out + self._emit(name, {"response": self.final})

    def error(self, err: GatewayError) -> bytes:
        out = b"" if self._started else self._start()
        out += self._close_item("incomplete")
        body = to_body(err)["error"]
        out += self._emit("error", {"code": body.get("code"), "message": body["message"],
                                    "param": body.get("param")})
        failed = self._ctx.envelope("failed", self.items, self._usage,
                                    error={"code": body.get("code") or "server_error",
                                           "message": body["message"]})
        return out + self._emit("response.failed", {"response": failed})


class ResponsesDialect:
    """One per request: the response id, creation time and echoed parameters are fixed when
    the request arrives; the stream encoder it hands out is kept for the stored response."""

    name = "openai"
    api = "responses"

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.encoder: ResponsesStreamEncoder | None = None
        self.rendered: dict[str, Any] | None = None
        # Set by the handler when the response is to be stored: awaited by the stream relay
        # before the final event is written (pep.streaming).
        self.on_complete: Callable[[], Awaitable[None]] | None = None

    def to_canonical(self, body: Any) -> Any:
        raise NotImplementedError("the responses handler converts with its stored history")

    def render(self, completion: dict[str, Any]) -> dict[str, Any]:
        self.rendered = self.ctx.render(completion)
        return self.rendered

    def stream_encoder(self, model: str) -> ResponsesStreamEncoder:
        self.ctx.model = model or self.ctx.model
        self.encoder = ResponsesStreamEncoder(self.ctx)
        return self.encoder

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return to_body(err)

    def stream_error(self, err: GatewayError) -> bytes:
        if self.encoder is None:
            return _event("error", {"type": "error", "sequence_number": 0, **{
                k: to_body(err)["error"].get(k) for k in ("code", "message", "param")}})
        return self.encoder.error(err)
