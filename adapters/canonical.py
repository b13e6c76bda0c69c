"""The canonical request (OpenAI Chat Completions as a dict): checks and text helpers.

Every adapter declares which canonical parameters it can honour; anything else present in a
request is a 400 naming the parameter (GUIDE.md 4: never silently dropped). Keys that would
choose where or how we connect are refused before any of this, for every API and provider, by
the one list in ``pep.validation`` (GUIDE.md 3.7, 3.12).
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

from pep.errors import BadRequest

# A parameter set to its neutral value changes nothing, so accepting it drops nothing.
_NEUTRAL: dict[str, Any] = {
    "n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0,
    "parallel_tool_calls": True, "store": False,
}

# Parameters every adapter handles (the router consumes stream_options itself).
BASE = frozenset({"model", "messages", "stream", "stream_options"})


def check_supported(body: dict[str, Any], supported: frozenset[str], kind: str) -> None:
    for key, value in body.items():
        if key in supported or value is None:
            continue
        if key in _NEUTRAL and value == _NEUTRAL[key]:
            continue
        raise BadRequest(
            f"parameter {key!r} is not supported by the {kind} provider this model routes to",
            param=key, code="unsupported_parameter",
        )


def require_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a 'role'", param="messages")
    return messages


def content_text(content: Any) -> str:
    """All text in a message ``content`` (string or array of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            p.get("text", "") for p in content
            if isinstance(p, dict) and p.get("type") in ("text", "input_text")
            and isinstance(p.get("text"), str)
        )
    return ""


def estimate_tokens(text: str) -> int:
    # ~4 characters per token is the usual English rule of thumb for BPE vocabularies.
    return (len(text) + 3) // 4


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            total += estimate_tokens(content_text(m.get("content"))) + 4  # role/framing
    return total


def max_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BadRequest("max_tokens must be a positive integer", param="max_tokens")
    return value


def stop_list(body: dict[str, Any]) -> list[str] | None:
    stop = body.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise BadRequest("'stop' must be a string or an array of strings", param="stop")


def encode_embeddings_base64(doc: dict[str, Any]) -> None:
    """OpenAI's ``encoding_format: base64``: little-endian float32, for providers that only
    return float lists (the openai SDK asks for base64 by default)."""
    for item in doc.get("data") or ():
        vec = item.get("embedding")
        if isinstance(vec, list):
            item["embedding"] = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()


def check_tools(body: dict[str, Any]) -> None:
    """Tools must be function tools with a name (and an object schema when given)."""
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise BadRequest("'tools' must be an array", param="tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if (not isinstance(fn, dict) or tool.get("type", "function") != "function"
                or not isinstance(fn.get("name"), str) or not fn["name"]
                or not isinstance(fn.get("parameters", {}), dict)):
            raise BadRequest(f"tools[{i}] must be a function tool with a name and an object "
                             "'parameters' schema", param="tools")


def map_parts(
    content: Any,
    where: str,
    provider: str,
    *,
    text: Callable[[str], dict[str, Any]],
    image: Callable[[str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Translate OpenAI message content (a string or text/image_url parts) into a provider's
    blocks: ``text`` shapes a text block, ``image`` an image from its URL. Any other part type
    is a 400 -- never silently dropped."""
    if isinstance(content, str):
        return [text(content)] if content else []
    out: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append(text(part.get("text", "")))
        elif kind == "image_url":
            out.append(image(str((part.get("image_url") or {}).get("url", ""))))
        else:
            raise BadRequest(f"{where}: content part {kind!r} is not supported by {provider}",
                             param="messages")
    return out


def data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a ``data:`` URL, else None."""
    if not url.startswith("data:"):
        return None
    head, _, data = url.partition(",")
    return head[5:].split(";")[0], data


def append_turn(turns: list[dict[str, Any]], role: str, items: list[dict[str, Any]],
                key: str = "content") -> None:
    """Providers that want strictly alternating roles get consecutive same-role messages
    (e.g. several tool results) merged into one turn."""
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})
