"""The legacy OpenAI Completions dialect (``POST /v1/completions``) on the canonical form.

A ``prompt`` becomes one user message; the answer's message text becomes ``choices[].text``
of a ``text_completion`` (chunks of ``object: text_completion`` when streaming, ended by
``data: [DONE]``). What chat models cannot do (``echo``, ``suffix``, ``logprobs``,
``best_of`` > 1, several prompts in one request) is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

import orjson

from pep.errors import BadRequest, GatewayError, to_body

_PASS = ("max_tokens", "temperature", "top_p", "stop", "presence_penalty", "frequency_penalty",
         "seed", "user", "n", "logit_bias")
_TOP_LEVEL = frozenset({"model", "prompt", "stream", "stream_options", "echo", "suffix",
                        "logprobs", "best_of", *_PASS})
# OpenAI's documented default for this endpoint (chat models have none).
DEFAULT_MAX_TOKENS = 16


def _bad(message: str, param: str) -> BadRequest:
    return BadRequest(message, param=param, code="unsupported_parameter")


def _prompt(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
        return raw[0]
    if isinstance(raw, list) and len(raw) > 1:
        raise _bad("several prompts in one request are not supported: send one per request",
                   "prompt")
    raise BadRequest("'prompt' must be a string (token arrays are not supported)",
                     param="prompt")


def to_canonical(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    # Forbidden keys were refused before this, in pep.validation (one list, one step).
    for key in body:
        if key not in _TOP_LEVEL:
            raise _bad(f"parameter {key!r} is not supported by this gateway", key)
    if body.get("echo"):
        raise _bad("'echo' is not supported by this gateway", "echo")
    if body.get("suffix"):
        raise _bad("'suffix' (insertion) is not supported by this gateway", "suffix")
    if body.get("logprobs") is not None:
        raise _bad("'logprobs' is not supported by this gateway", "logprobs")
    if body.get("best_of") not in (None, 1):
        raise _bad("'best_of' greater than 1 is not supported by this gateway", "best_of")
    out: dict[str, Any] = {"model": body.get("model"),
                           "messages": [{"role": "user", "content": _prompt(body.get("prompt"))}]}
    for key in _PASS:
        if body.get(key) is not None:
            out[key] = body[key]
    out.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    if body.get("stream"):
        out["stream"] = True
        include = (body.get("stream_options") or {}).get("include_usage")
        out["stream_options"] = {"include_usage": bool(include)}
    return out


def from_canonical(completion: dict[str, Any]) -> dict[str, Any]:
    choices = [{"text": (c.get("message") or {}).get("content") or "", "index": c.get("index", 0),
                "logprobs": None, "finish_reason": c.get("finish_reason")}
               for c in completion.get("choices") or ()]
    out = {"id": _cmpl_id(completion.get("id")), "object": "text_completion",
           "created": completion.get("created", 0), "model": completion.get("model"),
           "choices": choices}
    if completion.get("usage") is not None:
        out["usage"] = completion["usage"]
    return out


def _cmpl_id(chat_id: Any) -> str:
    cid = str(chat_id or "gateway")
    return "cmpl-" + cid.removeprefix("chatcmpl-")


class CompletionsStreamEncoder:
    __slots__ = ()

    def encode(self, chunk: dict[str, Any]) -> bytes:
        choices = [{"text": (c.get("delta") or {}).get("content") or "",
                    "index": c.get("index", 0), "logprobs": None,
                    "finish_reason": c.get("finish_reason")}
                   for c in chunk.get("choices") or ()]
        out: dict[str, Any] = {"id": _cmpl_id(chunk.get("id")), "object": "text_completion",
                               "created": chunk.get("created", 0), "model": chunk.get("model"),
                               "choices": choices}
        if "usage" in chunk:
            out["usage"] = chunk["usage"]
        return b"data: " + orjson.dumps(out) + b"\n\n"

    def close(self, finish_reason: str | None = None) -> bytes:
        return b"data: [DONE]\n\n"


class CompletionsDialect:
    name = "openai"
    api = "completions"

    def to_canonical(self, body: Any) -> dict[str, Any]:
        return to_canonical(body)

    def render(self, completion: dict[str, Any]) -> dict[str, Any]:
        return from_canonical(completion)

    def stream_encoder(self, model: str) -> CompletionsStreamEncoder:
        return CompletionsStreamEncoder()

    def error_body(self, err: GatewayError) -> dict[str, Any]:
        return to_body(err)

    def stream_error(self, err: GatewayError) -> bytes:
        return b"data: " + orjson.dumps(to_body(err)) + b"\n\n"
