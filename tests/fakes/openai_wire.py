"""OpenAI wire format for fake servers: chat.completion JSON and SSE chunk streams."""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes.server import Reply

SSE = {"content-type": "text/event-stream; charset=utf-8"}


def completion(text: str | None, *, tool_calls: list[dict[str, Any]] | None = None,
               finish: str = "stop", usage: tuple[int, int] = (9, 3)) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1700000000,
        "model": "gpt-upstream", "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                  "total_tokens": sum(usage)},
    }


def completion_bytes(text: str) -> bytes:
    return orjson.dumps(completion(text))


def reply(text: str | None, **kw: Any) -> Reply:
    return Reply(200, orjson.dumps(completion(text, **kw)))


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
            "model": "gpt-upstream", "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}]}


def stream_chunks(words: list[str], *, tool_calls: list[dict[str, Any]] | None = None,
                  usage: tuple[int, int] = (9, 3)) -> list[dict[str, Any]]:
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": w}) for w in words]
    for i, call in enumerate(tool_calls or ()):
        args = call["function"]["arguments"]
        out.append(chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                          "function": {"name": call["function"]["name"],
                                                       "arguments": ""}}]}))
        out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": args}}]}))
    out.append(chunk({}, "tool_calls" if tool_calls else "stop"))
    out.append({**chunk({}), "choices": [],
                "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                          "total_tokens": sum(usage)}})
    return out


def stream_reply(words: list[str], **kw: Any) -> Reply:
    frames = [b"data: " + orjson.dumps(c) + b"\n\n" for c in stream_chunks(words, **kw)]
    return Reply(200, headers=SSE, chunks=frames + [b"data: [DONE]\n\n"])
