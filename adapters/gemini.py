"""Google Gemini API (generativelanguage.googleapis.com, ``v1beta``), outbound.

``models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` (each SSE event a
whole ``GenerateContentResponse``), ``:batchEmbedContents``; key in ``x-goog-api-key``.
Function calls arrive whole (not streamed as argument fragments) and carry no id: the
translator names them ``call_<n>``; tool results are matched back to the function name
through the assistant message that made the call.

Thinking models put a ``thoughtSignature`` on the part of a function call, and Gemini 3
refuses (4xx) a history whose function calls lost it
(https://ai.google.dev/gemini-api/docs/thought-signatures). The gateway keeps no state, so
the signature travels inside the tool call id the client echoes back:
``call_<n>__ts__<signature as unpadded base64url>`` (base64url so the id stays within the
``[A-Za-z0-9_-]`` alphabet other providers accept for ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
SUPPORTED = BASE | {
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "n", "seed",
    "presence_penalty", "frequency_penalty", "response_format", "tools", "tool_choice",
}
EMBEDDINGS_SUPPORTED = frozenset({"model", "input", "encoding_format", "dimensions"})
# Candidate.FinishReason (https://ai.google.dev/api/generate-content#FinishReason); the
# rest (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL, UNEXPECTED_TOOL_CALL, ...) -> "stop".
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter",
          "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
          "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
          "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
          "IMAGE_RECITATION": "content_filter"}
_SIG = "__ts__"  # separates our call id from the carried thought signature
_GEN = {"temperature": "temperature", "top_p": "topP", "n": "candidateCount", "seed": "seed",
        "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}


def validate(settings: Any) -> None:
    if settings.api_key is None:
        raise ValueError("gemini needs api_key")


def _call_id(n: int, signature: Any) -> str:
    if not isinstance(signature, str) or not signature:
        return f"call_{n}"
    return f"call_{n}{_SIG}" + signature.replace("+", "-").replace("/", "_").rstrip("=")


def _signature(call_id: str) -> str | None:
    _, sep, sig = call_id.partition(_SIG)
    if not sep or not sig:
        return None
    std = sig.replace("-", "+").replace("_", "/")
    return std + "=" * (-len(std) % 4)


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    def image(url: str) -> dict[str, Any]:
        inline = data_url(url)
        if inline is None:
            raise BadRequest(f"{where}: gemini accepts images only as data: URLs",
                             param="messages")
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}

    return map_parts(content, where, "gemini", text=lambda t: {"text": t}, image=image)


def _contents(body: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        append_turn(contents, role, parts, key="parts")

    for i, m in enumerate(require_messages(body)):
        role, where = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(p["text"] for p in _parts(m.get("content"), where) if "text" in p)
        elif role == "user":
            add("user", _parts(m.get("content"), where))
        elif role == "assistant":
            parts = _parts(m.get("content"), where)
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                call_names[str(call.get("id"))] = str(fn.get("name"))
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError as exc:
                    raise BadRequest("tool call arguments must be JSON",
                                     param="messages") from exc
                part: dict[str, Any] = {"functionCall": {"name": fn.get("name"), "args": args}}
                sig = _signature(str(call.get("id") or ""))
                if sig:
                    part["thoughtSignature"] = sig  # back exactly where Gemini put it
                parts.append(part)
            add("model", parts)
        elif role == "tool":
            name = call_names.get(str(m.get("tool_call_id")))
            if name is None:
                raise BadRequest(f"{where}: tool_call_id matches no earlier tool call",
                                 param="messages")
            text = "".join(p.get("text", "") for p in _parts(m.get("content"), where))
            try:
                result = orjson.loads(text)
            except orjson.JSONDecodeError:
                result = None
            response = result if isinstance(result, dict) else {"content": text}
            add("user", [{"functionResponse": {"name": name, "response": response}}])
        else:
            raise BadRequest(f"{where}: role {role!r} is not supported by gemini",
                             param="messages")
    return system, contents


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        cfg: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "required":
        cfg = {"mode": "ANY"}
    elif choice == "none":
        cfg = {"mode": "NONE"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        cfg = {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    else:
        raise BadRequest("unsupported tool_choice", param="tool_choice")
    return {"functionCallingConfig": cfg}


def request_body(body: dict[str, Any]) -> dict[str, Any]:
    check_supported(body, SUPPORTED, "gemini")
    system, contents = _contents(body)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    gen: dict[str, Any] = {}
    cap = max_tokens(body)
    if cap:
        gen["maxOutputTokens"] = cap
    for key, name in _GEN.items():
        if body.get(key) is not None:
            gen[name] = body[key]
    stop = stop_list(body)
    if stop:
        gen["stopSequences"] = stop
    rf = body.get("response_format") or {}
    if rf.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        schema = (rf.get("json_schema") or {}).get("schema")
        if schema:
            gen["responseJsonSchema"] = schema
    elif rf.get("type") not in (None, "text"):
        raise BadRequest("unsupported response_format", param="response_format")
    if gen:
        out["generationConfig"] = gen
    if body.get("tools"):
        out["tools"] = [{"functionDeclarations": [
            {k: v for k, v in (t.get("function") or {}).items()
             if k in ("name", "description", "parameters")} for t in body["tools"]]}]
    cfg = _tool_config(body.get("tool_choice"))
    if cfg:
        out["toolConfig"] = cfg
    return out


def _base(target: Target) -> str:
    base = (target.settings.base_url or DEFAULT_BASE_URL).rstrip("/")
    return f"{base}/v1beta/models/{quote(target.model, safe='')}"


def _headers(target: Target) -> dict[str, str]:
    ps = target.settings
    return {"content-type": "application/json", **ps.headers,
            "x-goog-api-key": ps.api_key.get_secret_value()}


def to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    out = request_body(body)
    stream = bool(body.get("stream"))
    url = _base(target) + (":streamGenerateContent?alt=sse" if stream else ":generateContent")
    return UpstreamRequest("POST", url, _headers(target), orjson.dumps(out), stream=stream)


def _usage(doc: Mapping[str, Any]) -> Usage | None:
    u = doc.get("usageMetadata")
    if not isinstance(u, dict) or "promptTokenCount" not in u:
        return None
    # UsageMetadata: promptTokenCount already includes cachedContentTokenCount; tool-use
    # prompt tokens and thinking tokens are counted apart from prompt/candidates.
    prompt = int(u["promptTokenCount"] or 0) + int(u.get("toolUsePromptTokenCount") or 0)
    completion = int(u.get("candidatesTokenCount") or 0) + int(u.get("thoughtsTokenCount") or 0)
    return Usage(prompt, completion)


def _load(data: bytes | str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("gemini provider sent a response that is not JSON") from exc
    if isinstance(doc, dict) and "error" in doc:
        err = doc["error"] or {}
        code = err.get("code") if isinstance(err, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        raise provider_errors.from_status(
            "gemini", status, {}, provider_code=provider_errors.json_code(doc, ("error", "status")),
            in_stream=True)
    return doc if isinstance(doc, dict) else {}


def _split(parts: list[dict[str, Any]], start: int) -> tuple[str, list[dict[str, Any]]]:
    text = ""
    calls: list[dict[str, Any]] = []
    for p in parts:
        if "text" in p and not p.get("thought"):
            text += p["text"]
        elif "functionCall" in p:
            fc = p["functionCall"]
            calls.append({"id": _call_id(start + len(calls), p.get("thoughtSignature")),
                          "type": "function", "function": {
                "name": fc.get("name"), "arguments": orjson.dumps(fc.get("args") or {}).decode()}})
    return text, calls


def _finish(candidate: dict[str, Any], called: bool) -> str | None:
    reason = candidate.get("finishReason")
    if not reason:
        return None
    return "tool_calls" if called and reason == "STOP" else FINISH.get(reason, "stop")


def from_provider(data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    doc = _load(data)
    choices = []
    for i, cand in enumerate(doc.get("candidates") or ()):
        text, calls = _split((cand.get("content") or {}).get("parts") or [], 0)
        msg: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else ""),
                               "refusal": None}
        if calls:
            msg["tool_calls"] = calls
        choices.append({"index": cand.get("index", i), "message": msg, "logprobs": None,
                        "finish_reason": _finish(cand, bool(calls)) or "stop"})
    if not choices:
        raise UpstreamError("gemini returned no candidates (prompt blocked?)")
    usage = _usage(doc)
    out: dict[str, Any] = {"id": "chatcmpl-" + str(doc.get("responseId", "gemini")),
                           "object": "chat.completion", "created": 0,
                           "model": target.client_model, "choices": choices}
    if usage:
        out["usage"] = usage.to_openai()
    return out, usage


class StreamTranslator:
    def __init__(self, target: Target) -> None:
        self._parser = SSEParser()
        self._model = target.client_model
        self._calls = 0
        self._started = False
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [c for ev in self._parser.feed(data) for c in self._response(ev.data)]

    def finish(self) -> list[dict[str, Any]]:
        out = [c for ev in self._parser.finish() for c in self._response(ev.data)]
        if self.usage is not None:
            u = self.usage
            out.append({**self._chunk({}, None), "choices": [],
                        "usage": u.to_openai()})
        return out

    def _chunk(self, delta: dict[str, Any], finish: str | None, index: int = 0) -> dict[str, Any]:
        return {"id": "chatcmpl-gemini", "object": "chat.completion.chunk", "created": 0,
                "model": self._model, "choices": [{"index": index, "delta": delta,
                                                   "logprobs": None, "finish_reason": finish}]}

    def _response(self, data: str) -> list[dict[str, Any]]:
        doc = _load(data)
        self.usage = _usage(doc) or self.usage
        out = []
        if not self._started:
            self._started = True
            out.append(self._chunk({"role": "assistant", "content": ""}, None))
        for cand in doc.get("candidates") or ():
            idx = cand.get("index", 0)
            text, calls = _split((cand.get("content") or {}).get("parts") or [], self._calls)
            if text:
                out.append(self._chunk({"content": text}, None, idx))
            if calls:
                out.append(self._chunk({"tool_calls": [
                    {"index": self._calls + i, **c} for i, c in enumerate(calls)]}, None, idx))
                self._calls += len(calls)
            finish = _finish(cand, self._calls > 0)
            if finish:
                out.append(self._chunk({}, finish, idx))
        return out


def embeddings_to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    check_supported(body, EMBEDDINGS_SUPPORTED, "gemini")
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if not all(isinstance(i, str) for i in inputs):
        raise BadRequest("gemini embeddings take text input only", param="input")
    model = "models/" + target.model
    reqs = [{"model": model, "content": {"parts": [{"text": t}]}} for t in inputs]
    if body.get("dimensions"):
        for r in reqs:
            r["outputDimensionality"] = body["dimensions"]
    # gemini returns floats; the router applies encoding_format=base64 on the way back.
    return UpstreamRequest("POST", _base(target) + ":batchEmbedContents", _headers(target),
                           orjson.dumps({"requests": reqs}))


def embeddings_from_provider(data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    doc = _load(data)
    data_out = []
    for i, e in enumerate(doc.get("embeddings") or ()):
        data_out.append({"object": "embedding", "index": i, "embedding": e.get("values", [])})
    return {"object": "list", "data": data_out, "model": target.client_model,
            "usage": {"prompt_tokens": 0, "total_tokens": 0}}, None


def error_from_provider(
    status: int, hdrs: Mapping[str, str], data: bytes, target: Target
) -> GatewayError:
    code = provider_errors.json_code(data, ("error", "status"))
    return provider_errors.from_status("gemini", status, hdrs, provider_code=code,
                                       body_bytes=len(data))


class GeminiAdapter:
    """Chat, streaming and embeddings over generateContent / embedContent."""

    kind = "gemini"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)
    embeddings_to_provider = staticmethod(embeddings_to_provider)
    embeddings_from_provider = staticmethod(embeddings_from_provider)


ADAPTER = GeminiAdapter()
