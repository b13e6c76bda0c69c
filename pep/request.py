"""Normalise an inbound request into the canonical form the pipeline, policy and adapters share.

The canonical body is an OpenAI Chat Completions (or Embeddings) request dict. Validation here
is deliberately structural -- the fields the gateway itself relies on -- while provider
adapters reject parameters their provider cannot honour (never silently dropping them).
Keys no client may send at all are refused before this, in ``pep.validation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pep.errors import BadRequest

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NOT_PARAMS = frozenset({"model", "messages", "stream", "tools", "input"})
# Every field of the canonical (OpenAI) body that limits output tokens. The Anthropic dialect's
# max_tokens maps onto max_tokens; a max_tokens obligation caps all of these (pep.obligations).
TOKEN_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")


@dataclass(slots=True)
class NormalizedRequest:
    api: str  # "chat.completions" | "responses" | "completions" | "embeddings" | "messages" ...
    inbound_format: str  # "openai" | "anthropic"
    model: str
    stream: bool
    body: dict[str, Any]  # canonical OpenAI request, forwarded after obligations
    roles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # one per message, normalised
    tools: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    max_tokens: int | None = None
    estimated_tokens: int = 0
    # Responses API: the stored response this request continues ({id, owner, chain_length}).
    previous_response: dict[str, Any] | None = None
    # Directives of the client's Cache-Control header (the cache obligation may honour them).
    cache_control: list[str] = field(default_factory=list)


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required and must be a non-empty string", param="model")
    return model


def message_text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise BadRequest(
                    f"messages[{index}].content parts must be objects with a 'type'",
                    param=f"messages[{index}].content",
                )
            if part["type"] == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise BadRequest(
                        f"messages[{index}].content text part needs a string 'text'",
                        param=f"messages[{index}].content",
                    )
                parts.append(text)
        return "\n".join(parts)
    raise BadRequest(
        f"messages[{index}].content must be a string, an array of parts or null",
        param=f"messages[{index}].content",
    )


def _max_tokens(body: dict[str, Any]) -> int | None:
    value = None
    for key in TOKEN_LIMIT_FIELDS:
        v = body.get(key)
        if v is None:
            continue
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise BadRequest(f"'{key}' must be a positive integer", param=key)
        value = v if value is None else min(value, v)
    return value


def normalize_chat(
    body: Any,
    *,
    normalise_text: Callable[[str], str],
    inbound_format: str = "openai",
    api: str = "chat.completions",
) -> NormalizedRequest:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = _require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    roles: list[str] = []
    texts: list[str] = []
    chars = 0
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise BadRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role not in _ROLES:
            raise BadRequest(f"messages[{i}].role is missing or invalid", param=f"messages[{i}].role")
        text = normalise_text(message_text(msg.get("content"), i))
        roles.append(role)
        texts.append(text)
        chars += len(text)
    tools_raw = body.get("tools")
    tools: list[str] = []
    if tools_raw is not None:
        if not isinstance(tools_raw, list):
            raise BadRequest("'tools' must be an array", param="tools")
        for i, tool in enumerate(tools_raw):
            fn = tool.get("function") if isinstance(tool, dict) else None
            name = fn.get("name") if isinstance(fn, dict) else None
            if not isinstance(name, str):
                raise BadRequest(f"tools[{i}].function.name is required", param=f"tools[{i}]")
            tools.append(name)
    params = {k: v for k, v in body.items() if k not in _NOT_PARAMS}
    return NormalizedRequest(
        api=api,
        inbound_format=inbound_format,
        model=model,
        stream=stream,
        body=body,
        roles=roles,
        texts=texts,
        tools=tools,
        params=params,
        max_tokens=_max_tokens(body),
        estimated_tokens=chars // 4 + 4 * len(messages),
    )


def normalize_embeddings(body: Any, *, normalise_text: Callable[[str], str]) -> NormalizedRequest:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = _require_model(body)
    raw = body.get("input")
    if isinstance(raw, str):
        items: list[Any] = [raw]
    elif isinstance(raw, list) and raw:
        items = raw
    else:
        raise BadRequest("'input' must be a string or a non-empty array", param="input")
    texts: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            texts.append(normalise_text(item))
        elif isinstance(item, int) or (
            isinstance(item, list) and all(isinstance(t, int) for t in item)
        ):
            texts.append("")  # pre-tokenised input carries no text we can inspect
        else:
            raise BadRequest(f"input[{i}] must be a string or token array", param="input")
    chars = sum(len(t) for t in texts)
    return NormalizedRequest(
        api="embeddings",
        inbound_format="openai",
        model=model,
        stream=False,
        body=body,
        roles=["user"] * len(texts),
        texts=texts,
        params={k: v for k, v in body.items() if k not in _NOT_PARAMS},
        estimated_tokens=chars // 4 + 1,
    )
