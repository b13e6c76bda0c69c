"""The embedded ``mock`` provider: offline, deterministic, in-process, OpenAI wire format.

The router hands the request built here to ``respond`` instead of a socket (``mock://``),
and parses the bytes it returns with the ``openai`` adapter, so the default configuration
exercises the same translation and streaming path as a real provider.

What it answers (deterministic; no clock, no randomness):
- text: ``This is the regogate mock provider. You said: <last user text>``; after a tool
  result: ``The tool returned: <result>``; with ``response_format`` json: a JSON object.
- tools offered (and ``tool_choice`` not ``none``, last message not a tool result): one call
  of the chosen (or first) tool, required arguments filled by JSON type.
- "tokens" are whitespace-separated words: ``prompt_tokens`` = words in all message text,
  ``completion_tokens`` = words in the answer (or the tool arguments' JSON).
- ``max_tokens``/``max_completion_tokens`` keep that many words, ``finish_reason: length``;
  a ``stop`` string cuts the answer before it.
- streaming: one chunk per word, the usage chunk when ``stream_options.include_usage``.
- embeddings: ``dimensions`` (default 8) floats from SHA-256 of the input; base64 or float.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson

from adapters import openai
from adapters.canonical import content_text
from adapters.sse import encode
from adapters.types import Target, UpstreamRequest

CREATED = 1_700_000_000  # fixed, for deterministic output
SUPPORTED = openai.SUPPORTED
MOCK_HEADERS = {"content-type": "application/json"}
SSE_HEADERS = {"content-type": "text/event-stream"}


def validate(settings: Any) -> None:
    """Nothing to check: the mock needs no endpoint or key."""


def to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    out = openai.upstream_body(body, target)
    return UpstreamRequest("POST", "mock://chat/completions", {}, orjson.dumps(out),
                           stream=bool(out.get("stream")))


def embeddings_to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    req = openai.embeddings_to_provider(body, target)
    return UpstreamRequest("POST", "mock://embeddings", {}, req.body)


from_provider = openai.from_provider
embeddings_from_provider = openai.embeddings_from_provider
error_from_provider = openai.error_from_provider
StreamTranslator = openai.StreamTranslator


def respond(req: UpstreamRequest) -> tuple[int, dict[str, str], bytes]:
    """The in-process transport: status, headers and the exact bytes OpenAI would send."""
    body = orjson.loads(req.body)
    if req.url.endswith("/embeddings"):
        return 200, MOCK_HEADERS, orjson.dumps(embeddings(body))
    if body.get("stream"):
        return 200, SSE_HEADERS, stream_bytes(body)
    return 200, MOCK_HEADERS, orjson.dumps(completion(body))


def _words(text: str) -> int:
    return len(text.split())


def _fill(schema: Any, text: str) -> Any:
    t = schema.get("type") if isinstance(schema, dict) else None
    if t == "string":
        return text or "mock"
    if t in ("number", "integer"):
        return 1
    if t == "boolean":
        return True
    if t == "array":
        return []
    if t == "object":
        props = schema.get("properties") or {}
        return {k: _fill(props.get(k), text) for k in schema.get("required") or ()}
    return None


def _tool_call(body: dict[str, Any], text: str) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools or choice == "none" or body["messages"][-1].get("role") == "tool":
        return None
    fn = tools[0].get("function") or {}
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        fn = next((t["function"] for t in tools if t.get("function", {}).get("name") == wanted), fn)
    args = orjson.dumps(_fill(fn.get("parameters") or {"type": "object"}, text)).decode()
    digest = hashlib.sha256(args.encode() + str(fn.get("name")).encode()).hexdigest()[:16]
    return {"id": "call_" + digest, "type": "function",
            "function": {"name": fn.get("name", "tool"), "arguments": args}}


def _answer(body: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    messages = body["messages"]
    last = messages[-1]
    user_text = next(
        (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    call = _tool_call(body, user_text)
    if call is not None:
        return "", "tool_calls", call
    if last.get("role") == "tool":
        text = "The tool returned: " + content_text(last.get("content"))
    else:
        text = "This is the regogate mock provider. You said: " + user_text
    rf = (body.get("response_format") or {}).get("type")
    if rf in ("json_object", "json_schema"):
        text = orjson.dumps({"mock": True, "answer": text}).decode()
    finish = "stop"
    stop = body.get("stop")
    for s in [stop] if isinstance(stop, str) else stop or ():
        if isinstance(s, str) and s and s in text:
            text = text[: text.index(s)]
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(cap, int) and _words(text) > cap:
        text = " ".join(text.split()[:cap])
        finish = "length"
    return text, finish, None


def _usage(body: dict[str, Any], text: str, call: dict[str, Any] | None) -> dict[str, int]:
    prompt = sum(_words(content_text(m.get("content"))) for m in body["messages"])
    completion = _words(call["function"]["arguments"]) if call else _words(text)
    n = body.get("n") or 1
    return {"prompt_tokens": prompt, "completion_tokens": completion * n,
            "total_tokens": prompt + completion * n}


def _id(body: dict[str, Any]) -> str:
    return "chatcmpl-mock" + hashlib.sha256(orjson.dumps(body["messages"])).hexdigest()[:20]


def completion(body: dict[str, Any]) -> dict[str, Any]:
    text, finish, call = _answer(body)
    message: dict[str, Any] = {"role": "assistant", "content": text if call is None else None,
                               "refusal": None}
    if call is not None:
        message["tool_calls"] = [call]
    return {
        "id": _id(body), "object": "chat.completion", "created": CREATED,
        "model": body.get("model", "mock"),
        "choices": [
            {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            for i in range(body.get("n") or 1)
        ],
        "usage": _usage(body, text, call), "system_fingerprint": "fp_mock",
    }


def stream_bytes(body: dict[str, Any]) -> bytes:
    text, finish, call = _answer(body)
    base = {"id": _id(body), "object": "chat.completion.chunk", "created": CREATED,
            "model": body.get("model", "mock"), "system_fingerprint": "fp_mock"}
    n = body.get("n") or 1

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, i: int = 0) -> bytes:
        c = {**base, "choices": [{"index": i, "delta": delta, "logprobs": None,
                                  "finish_reason": finish_reason}]}
        return encode(orjson.dumps(c))

    parts: list[bytes] = []
    for i in range(n):
        parts.append(chunk({"role": "assistant", "content": "", "refusal": None}, None, i))
        if call is not None:
            parts.append(chunk({"tool_calls": [{"index": 0, **call}]}, None, i))
        else:
            for j, word in enumerate(text.split(" ")):
                parts.append(chunk({"content": word if j == 0 else " " + word}, None, i))
        parts.append(chunk({}, finish, i))
    if (body.get("stream_options") or {}).get("include_usage"):
        parts.append(encode(orjson.dumps(
            {**base, "choices": [], "usage": _usage(body, text, call)})))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _vector(text: str, dims: int) -> list[float]:
    out: list[float] = []
    counter = 0
    while len(out) < dims:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend((b - 127.5) / 127.5 for b in digest)
        counter += 1
    return [round(v, 6) for v in out[:dims]]


def embeddings(body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    items = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dims = int(body.get("dimensions") or 8)
    data = []
    tokens = 0
    for i, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += max(1, _words(text))
        vec = _vector(text, dims)
        emb: Any = vec
        if body.get("encoding_format") == "base64":
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": body.get("model", "mock"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


class MockAdapter:
    """OpenAI's wire format answered in process (no network)."""

    kind = "mock"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)
    embeddings_to_provider = staticmethod(embeddings_to_provider)
    embeddings_from_provider = staticmethod(embeddings_from_provider)
    respond = staticmethod(respond)


ADAPTER = MockAdapter()
