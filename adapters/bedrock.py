"""Amazon Bedrock Converse / ConverseStream, outbound, signed with SigV4 (botocore).

``POST https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse`` (and
``/converse-stream``, answered as ``application/vnd.amazon.eventstream``: binary frames with
``:event-type`` headers ``messageStart``, ``contentBlockStart``, ``contentBlockDelta``,
``contentBlockStop``, ``messageStop``, ``metadata``; failures as ``:message-type: exception``).
https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
Credentials: the provider's ``aws_access_key_id``/``aws_secret_access_key`` (+ session
token), else botocore's default chain, resolved once at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamError

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
from adapters.types import Target, UpstreamRequest, Usage
from pep.errors import BadRequest, GatewayError, UpstreamError

SUPPORTED = BASE | {"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                    "tools", "tool_choice"}
# StopReason (API_runtime_MessageStopEvent / API_runtime_Converse); the malformed_* values
# fall back to "stop".
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls", "guardrail_intervened": "content_filter",
          "content_filtered": "content_filter", "model_context_window_exceeded": "length"}
# Exception event types -> HTTP status the same failure has on the non-stream API.
_EXCEPTION_STATUS = {"throttlingException": 429, "validationException": 400,
                     "modelTimeoutException": 408, "serviceUnavailableException": 503,
                     "modelStreamErrorException": 502, "internalServerException": 500}


def validate(settings: Any) -> None:
    if not settings.region:
        raise ValueError("bedrock needs region")


def prepare(settings: Any) -> Credentials:
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        token = settings.aws_session_token
        return Credentials(settings.aws_access_key_id.get_secret_value(),
                           settings.aws_secret_access_key.get_secret_value(),
                           token.get_secret_value() if token else None)
    import botocore.session  # noqa: PLC0415 - only for the default chain

    creds = botocore.session.get_session().get_credentials()
    if creds is None:
        raise ValueError("bedrock: no AWS credentials (set aws_access_key_id and "
                         "aws_secret_access_key, or configure the default AWS chain)")
    return creds


def _content(content: Any, where: str) -> list[dict[str, Any]]:
    def image(url: str) -> dict[str, Any]:
        inline = data_url(url)
        if inline is None or not inline[0].startswith("image/"):
            raise BadRequest(f"{where}: bedrock accepts images only as data: URLs",
                             param="messages")
        media, data = inline
        fmt = media[len("image/"):].replace("jpg", "jpeg")
        return {"image": {"format": fmt, "source": {"bytes": data}}}

    return map_parts(content, where, "bedrock", text=lambda t: {"text": t}, image=image)


def request_body(body: dict[str, Any], target: Target) -> dict[str, Any]:
    check_supported(body, SUPPORTED, "bedrock")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        append_turn(messages, role, blocks)

    for i, m in enumerate(require_messages(body)):
        role, where = m["role"], f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_content(m.get("content"), where))
        elif role == "user":
            add("user", _content(m.get("content"), where))
        elif role == "assistant":
            blocks = _content(m.get("content"), where)
            for call in m.get("tool_calls") or ():
                fn = call.get("function") or {}
                try:
                    args = orjson.loads(fn.get("arguments") or "{}")
                except orjson.JSONDecodeError as exc:
                    raise BadRequest("tool call arguments must be JSON",
                                     param="messages") from exc
                blocks.append({"toolUse": {"toolUseId": call.get("id"), "name": fn.get("name"),
                                           "input": args}})
            add("assistant", blocks)
        elif role == "tool":
            add("user", [{"toolResult": {"toolUseId": m.get("tool_call_id"),
                                         "content": _content(m.get("content"), where)}}])
        else:
            raise BadRequest(f"{where}: role {role!r} is not supported by bedrock",
                             param="messages")
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    inference: dict[str, Any] = {"maxTokens": max_tokens(body) or target.settings.default_max_tokens}
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stop = stop_list(body)
    if stop:
        inference["stopSequences"] = stop
    out["inferenceConfig"] = inference
    if body.get("tools"):
        tools = [{"toolSpec": {"name": f.get("name"), "description": f.get("description") or
                               f.get("name"),
                               "inputSchema": {"json": f.get("parameters") or {"type": "object"}}}}
                 for f in (t.get("function") or {} for t in body["tools"])]
        out["toolConfig"] = {"tools": tools}
        choice = body.get("tool_choice")
        if choice == "required":
            out["toolConfig"]["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            out["toolConfig"]["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
        elif choice == "none":
            raise BadRequest("tool_choice 'none' is not supported by bedrock",
                             param="tool_choice", code="unsupported_parameter")
        elif choice == "auto":
            out["toolConfig"]["toolChoice"] = {"auto": {}}
    return out


def to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    ps = target.settings
    stream = bool(body.get("stream"))
    payload = orjson.dumps(request_body(body, target))
    base = (ps.base_url or f"https://bedrock-runtime.{ps.region}.amazonaws.com").rstrip("/")
    url = f"{base}/model/{quote(target.model, safe='')}/" + (
        "converse-stream" if stream else "converse")
    headers = {"content-type": "application/json", **ps.headers}
    if stream:
        headers["accept"] = "application/vnd.amazon.eventstream"
    return UpstreamRequest("POST", url, sign(target, url, headers, payload), payload,
                           stream=stream)


def sign(target: Target, url: str, headers: dict[str, str], payload: bytes) -> dict[str, str]:
    creds = target.state
    frozen = creds.get_frozen_credentials() if hasattr(creds, "get_frozen_credentials") else creds
    req = AWSRequest(method="POST", url=url, data=payload, headers=headers)
    SigV4Auth(frozen, "bedrock", target.settings.region).add_auth(req)
    return dict(req.headers.items())


def _usage(u: Any) -> Usage | None:
    if not isinstance(u, dict):
        return None
    # TokenUsage (API_runtime_TokenUsage): with prompt caching, the tokens read from and
    # written to the cache are reported apart from inputTokens; all of them were prompt.
    prompt = sum(int(u.get(k) or 0) for k in
                 ("inputTokens", "cacheReadInputTokens", "cacheWriteInputTokens"))
    return Usage(prompt, int(u.get("outputTokens") or 0))


def from_provider(data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("bedrock provider sent a response that is not JSON") from exc
    message = (doc.get("output") or {}).get("message") if isinstance(doc, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        # Converse always answers output.message.content (a list, empty for no text).
        raise UpstreamError("bedrock provider sent a response without output.message.content")
    texts, calls = [], []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            tu = block["toolUse"]
            calls.append({"id": tu.get("toolUseId"), "type": "function", "function": {
                "name": tu.get("name"), "arguments": orjson.dumps(tu.get("input")).decode()}})
    msg: dict[str, Any] = {"role": "assistant",
                           "content": "".join(texts) if texts or not calls else None,
                           "refusal": None}
    if calls:
        msg["tool_calls"] = calls
    usage = _usage(doc.get("usage"))
    out: dict[str, Any] = {"id": "chatcmpl-bedrock", "object": "chat.completion", "created": 0,
                           "model": target.client_model,
                           "choices": [{"index": 0, "message": msg, "logprobs": None,
                                        "finish_reason": FINISH.get(doc.get("stopReason", ""),
                                                                    "stop")}]}
    if usage:
        out["usage"] = usage.to_openai()
    return out, usage


class StreamTranslator:
    def __init__(self, target: Target) -> None:
        self._buf = EventStreamBuffer()
        self._model = target.client_model
        self._tools: dict[int, int] = {}
        self.usage: Usage | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "chatcmpl-bedrock", "object": "chat.completion.chunk", "created": 0,
                "model": self._model, "choices": [{"index": 0, "delta": delta,
                                                   "logprobs": None, "finish_reason": finish}]}

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf.add_data(data)
        out: list[dict[str, Any]] = []
        try:
            for message in self._buf:
                out.extend(self._message(message.headers, message.payload))
        except EventStreamError as exc:
            raise UpstreamError("bedrock sent a malformed event stream") from exc
        return out

    def finish(self) -> list[dict[str, Any]]:
        return []

    def _message(self, headers: Mapping[str, Any], payload: bytes) -> list[dict[str, Any]]:
        doc = orjson.loads(payload) if payload else {}
        if headers.get(":message-type") == "exception":
            kind = str(headers.get(":exception-type"))
            raise provider_errors.from_status("bedrock", _EXCEPTION_STATUS.get(kind, 502), {},
                                              provider_code=kind[:1].upper() + kind[1:],
                                              in_stream=True)
        event = headers.get(":event-type")
        if event == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if event == "contentBlockStart":
            tu = (doc.get("start") or {}).get("toolUse")
            if tu:
                idx = self._tools.setdefault(doc.get("contentBlockIndex", 0), len(self._tools))
                return [self._chunk({"tool_calls": [{"index": idx, "id": tu.get("toolUseId"),
                                                     "type": "function", "function": {
                                                         "name": tu.get("name"),
                                                         "arguments": ""}}]})]
            return []
        if event == "contentBlockDelta":
            delta = doc.get("delta") or {}
            if "text" in delta:
                return [self._chunk({"content": delta["text"]})]
            if "toolUse" in delta:
                idx = self._tools.get(doc.get("contentBlockIndex", 0), 0)
                return [self._chunk({"tool_calls": [{"index": idx, "function": {
                    "arguments": delta["toolUse"].get("input", "")}}]})]
            return []
        if event == "messageStop":
            return [self._chunk({}, FINISH.get(doc.get("stopReason", ""), "stop"))]
        if event == "metadata":
            self.usage = _usage(doc.get("usage"))
            if self.usage:
                u = self.usage
                return [{**self._chunk({}), "choices": [], "usage": u.to_openai()}]
        return []


def error_from_provider(
    status: int, hdrs: Mapping[str, str], data: bytes, target: Target
) -> GatewayError:
    # x-amzn-ErrorType: "ValidationException:http://internal.amazon.com/coral/..."; the
    # body's __type may be "com.amazon.coral.validate#ValidationException".
    token = hdrs.get("x-amzn-errortype", "").split(":", 1)[0]
    if not provider_errors.known_code(token):
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raw = None
        kind = raw.get("__type") if isinstance(raw, dict) else None
        token = kind.rsplit("#", 1)[-1] if isinstance(kind, str) else ""
    return provider_errors.from_status("bedrock", status, hdrs, provider_code=token,
                                       body_bytes=len(data))


class BedrockAdapter:
    """Chat and streaming over Converse; SigV4 credentials prepared once."""

    kind = "bedrock"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)
    prepare = staticmethod(prepare)


ADAPTER = BedrockAdapter()
