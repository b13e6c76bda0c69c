"""Provider errors do not leak (docs/audit.md "Never recorded"): whatever text a provider puts
in an error -- JSON or not -- neither the client (OpenAI or Anthropic dialect, official SDKs)
nor the audit record ever sees it; they get a sanitised code and message, and the provider's
documented error type/code token only when it is on the allow-list."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e.test_providers_e2e import provider
from tests.adapters.test_golden import UPSTREAM_MODEL
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import error_body, running_gateway

SECRET = "sk-live-4f9aXq internal host db-7.corp.example prompt: my card 4111111111111111"
ASK = [{"role": "user", "content": "hello"}]


def json_error(kind: str, code: str) -> bytes:
    """The provider's own error shape, carrying the secret-looking text in its message."""
    if kind == "anthropic":
        doc: dict[str, Any] = {"type": "error", "error": {"type": code, "message": SECRET}}
    elif kind == "gemini":
        doc = {"error": {"code": 400, "message": SECRET, "status": code}}
    elif kind == "bedrock":
        doc = {"message": SECRET}
    else:
        doc = {"error": {"message": SECRET, "type": "invalid_request_error", "code": code,
                         "param": None}}
    return json.dumps(doc).encode()


# (provider kind, upstream status, body, headers, client status, code, provider_code)
CASES: list[tuple[str, int, bytes, dict[str, str], int, str, str | None]] = [
    ("openai", 400, json_error("openai", "context_length_exceeded"), {}, 400,
     "upstream_bad_request", "context_length_exceeded"),
    # a code that is free text is dropped; the documented type next to it is kept
    ("openai", 400, json_error("openai", SECRET), {}, 400, "upstream_bad_request",
     "invalid_request_error"),
    ("openai", 500, b"<html><body>upstream proxy says " + SECRET.encode() + b"</body></html>",
     {"content-type": "text/html"}, 502, "upstream_error", None),
    ("azure_openai", 429, json_error("openai", "rate_limit_exceeded"), {"retry-after": "30"},
     429, "upstream_rate_limited", "rate_limit_exceeded"),
    ("anthropic", 529, json_error("anthropic", "overloaded_error"), {}, 502,
     "upstream_unavailable", "overloaded_error"),
    ("anthropic", 400, json_error("anthropic", "invalid_request_error"), {}, 400,
     "upstream_bad_request", "invalid_request_error"),
    ("gemini", 400, json_error("gemini", "INVALID_ARGUMENT"), {}, 400, "upstream_bad_request",
     "INVALID_ARGUMENT"),
    ("bedrock", 400, json_error("bedrock", ""),
     {"x-amzn-errortype": "ValidationException:http://internal.amazon.com/coral/"}, 400,
     "upstream_bad_request", "ValidationException"),
    ("openai", 403, json_error("openai", "invalid_api_key"), {}, 502, "upstream_auth",
     "invalid_api_key"),
    ("openai", 404, json_error("openai", "model_not_found"), {}, 502, "upstream_not_found",
     "model_not_found"),
]


def config_for(kind: str, fake: FakeServer) -> dict[str, Any]:
    return {"providers": {"p": {**provider(kind, fake.url), "max_retries": 0}},
            "models": {"mock-gpt": {"provider": "p", "model": UPSTREAM_MODEL[kind]}}}


def always(reply: Reply) -> Any:
    def answer(_: Recorded) -> Reply:
        return Reply(reply.status, reply.body, dict(reply.headers),
                     chunks=list(reply.chunks) if reply.chunks is not None else None,
                     chunk_delay_s=reply.chunk_delay_s)
    return answer


async def settled(gw: Any) -> list[dict[str, Any]]:
    """The trail once the stream's completion record is in (written after the client saw
    the in-band error); the bound is a hang guard, not a timing claim."""
    for _ in range(200):
        events: list[dict[str, Any]] = await gw.audit_records()
        if any(e["event"] in ("request.completion", "upstream.error") for e in events):
            return events
        await asyncio.sleep(0.05)
    return events


def assert_clean(text: str) -> None:
    for piece in ("sk-live-4f9aXq", "db-7.corp", "4111111111111111", "<html>", "proxy says"):
        assert piece not in text, piece


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{c[6] or 'none'}" for c in CASES])
async def test_provider_error_text_reaches_neither_client_nor_audit(
        tmp_path: Path, case: tuple[str, int, bytes, dict[str, str], int, str, str | None]
) -> None:
    kind, status, body, headers, want_status, want_code, want_provider_code = case
    reply = Reply(status, body, {"content-type": "application/json", **headers})
    async with FakeServer(always(reply)) as fake, \
            running_gateway(tmp_path, config=config_for(kind, fake)) as gw:
        with pytest.raises(openai.APIStatusError) as oa:
            await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=ASK)
        with pytest.raises(anthropic.APIStatusError) as an:
            await gw.anthropic("alice").messages.create(model="mock-gpt", max_tokens=10,
                                                        messages=ASK)
        events = await gw.audit_records()
    # OpenAI dialect: sanitised code, our message, allow-listed provider code only.
    assert oa.value.status_code == want_status
    err = error_body(oa.value)
    assert err["code"] == want_code and err.get("provider_code") == want_provider_code
    assert err["provider_status"] == status
    assert_clean(oa.value.response.text)
    # Anthropic dialect: its own error shape, the same sanitised message.
    assert an.value.status_code == want_status
    an_body = error_body(an.value)
    assert an_body["type"] == "error" and an_body["error"]["message"] == err["message"]
    assert_clean(an.value.response.text)
    if want_status == 429:
        assert oa.value.response.headers["retry-after"] == "30"
    # The audit: one upstream.error per request, with the size of the body, never its text.
    failures = [e for e in events if e["event"] == "upstream.error"]
    assert len(failures) == 2 and len(fake.requests) == 2
    for record in failures:
        assert record["outcome"]["error_code"] == want_code
        assert record["extra"]["upstream"] == {"status": status,
                                               "provider_code": want_provider_code,
                                               "body_bytes": len(body)}
    assert_clean(json.dumps(events))


async def test_mid_stream_provider_error_text_does_not_leak(tmp_path: Path) -> None:
    frame = json.dumps({"error": {"message": SECRET, "type": "server_error", "code": None}})
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}
    frames = [f"data: {json.dumps(chunk)}\n\n".encode(), f"data: {frame}\n\n".encode()]
    reply = Reply(200, headers={"content-type": "text/event-stream"}, chunks=frames,
                  chunk_delay_s=0.05)
    async with FakeServer(always(reply)) as fake, \
            running_gateway(tmp_path, config=config_for("openai", fake)) as gw:
        # Before the first chunk reached the client this is a plain 502; after it, an
        # in-band error event: neither may carry the provider's text.
        with pytest.raises(openai.APIError) as info:
            stream = await gw.openai("alice").chat.completions.create(
                model="mock-gpt", messages=ASK, stream=True)
            async for _ in stream:
                pass
        events = await settled(gw)
    assert "server_error" in str(info.value) and "sk-live" not in str(info.value)
    assert_clean(json.dumps(events))
    assert any(e.get("outcome", {}).get("error_code") == "upstream_unavailable" for e in events)


async def refused_by_gateway(tmp_path: Path, kind: str, reply: Reply, *, stream: bool
                             ) -> tuple[openai.APIStatusError, list[dict[str, Any]], int]:
    """One openai-SDK request against a provider answering ``reply``: the SDK's error, the
    trail, and how many requests the provider saw."""
    async with FakeServer(always(reply)) as fake, \
            running_gateway(tmp_path, config=config_for(kind, fake)) as gw:
        with pytest.raises(openai.APIStatusError) as oa:
            await gw.openai("alice").chat.completions.create(
                model="mock-gpt", messages=ASK, stream=stream)
        events = await gw.audit_records()
    return oa.value, events, len(fake.requests)


def assert_one_upstream_error(error: openai.APIStatusError, events: list[dict[str, Any]],
                              sent: int) -> None:
    assert error.status_code == 502
    assert error_body(error)["code"] == "upstream_error"
    failures = [e for e in events if e["event"] == "upstream.error"]
    assert len(failures) == 1 and sent == 1
    assert failures[0]["outcome"]["error_code"] == "upstream_error"
    assert not [e for e in events if e["event"] == "request.completion"]


# A provider that answers a streaming request with 200 and no event at all: a plain JSON
# completion (a proxy or a compatible server that ignores `stream`), or nothing.
_JSON_COMPLETION = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is 18 C."},
                 "finish_reason": "stop"}]}).encode()


@pytest.mark.parametrize("kind", ["openai", "azure_openai", "anthropic", "gemini", "bedrock"])
@pytest.mark.parametrize("body", [_JSON_COMPLETION, b""], ids=["json-body", "empty-body"])
async def test_stream_that_ends_before_any_event_is_an_upstream_error(
        kind: str, body: bytes, tmp_path: Path) -> None:
    reply = Reply(200, body, {"content-type": "application/json"})
    async with FakeServer(always(reply)) as fake, \
            running_gateway(tmp_path, config=config_for(kind, fake)) as gw:
        # The failure is known before the first byte, so the client gets a status and a
        # JSON error, never an empty answer that looks complete.
        with pytest.raises(openai.APIStatusError) as oa:
            await gw.openai("alice").chat.completions.create(
                model="mock-gpt", messages=ASK, stream=True)
        with pytest.raises(anthropic.APIStatusError) as an:
            async with gw.anthropic("alice").messages.stream(
                    model="mock-gpt", max_tokens=10, messages=ASK) as stream:
                await stream.get_final_message()
        events = await gw.audit_records()
    assert oa.value.status_code == 502 and an.value.status_code == 502
    assert error_body(oa.value)["code"] == "upstream_error"
    assert "It is 18 C." not in oa.value.response.text
    failures = [e for e in events if e["event"] == "upstream.error"]
    assert len(failures) == 2 and len(fake.requests) == 2
    assert all(e["outcome"]["error_code"] == "upstream_error" for e in failures)
    assert not [e for e in events if e["event"] == "request.completion"]


async def test_stream_without_any_event_falls_back_to_the_next_deployment(
        tmp_path: Path) -> None:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"content": "from backup"},
                          "finish_reason": None}]}
    frames = [f"data: {json.dumps(chunk)}\n\n".encode(), b"data: [DONE]\n\n"]
    first_reply = Reply(200, _JSON_COMPLETION, {"content-type": "application/json"})
    backup_reply = Reply(200, headers={"content-type": "text/event-stream"}, chunks=frames)
    async with FakeServer(always(first_reply)) as first, \
            FakeServer(always(backup_reply)) as second:
        config = {
            "providers": {"primary": {**provider("openai", first.url), "max_retries": 0},
                          "backup": {**provider("openai", second.url), "max_retries": 0}},
            "models": {"mock-gpt": {"provider": "primary", "model": "gpt-4o-mini",
                                    "fallbacks": [{"provider": "backup",
                                                   "model": "gpt-4o-mini"}]}},
        }
        async with running_gateway(tmp_path, config=config) as gw:
            stream = await gw.openai("alice").chat.completions.create(
                model="mock-gpt", messages=ASK, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream
                            if c.choices])
    assert text == "from backup"
    assert len(first.requests) == 1 and len(second.requests) == 1


_UNREADABLE = {
    "openai": b"data: {\"id\": \"c\", \"choices\": [\n\n",
    "azure_openai": b"data: \xff\xfe not utf-8\n\n",
    "anthropic": b"event: message_start\ndata: {\"type\": \"message_start\", \"message\n\n",
    "gemini": b"data: {\"candidates\": [{\"content\"\n\n",
    "bedrock": b"\x00\x00\x00\x20\x00\x00\x00\x00\xde\xad\xbe\xef" + b"x" * 20,
}


@pytest.mark.parametrize("kind", sorted(_UNREADABLE))
async def test_stream_the_adapter_cannot_read_is_an_upstream_error_never_a_500(
        kind: str, tmp_path: Path) -> None:
    ctype = "application/vnd.amazon.eventstream" if kind == "bedrock" else "text/event-stream"
    reply = Reply(200, headers={"content-type": ctype}, chunks=[_UNREADABLE[kind]])
    assert_one_upstream_error(*await refused_by_gateway(tmp_path, kind, reply, stream=True))


# 200 answers that are JSON but not the provider's answer shape (each of these was a 500,
# or an empty or non-text answer relayed as if complete, before the router checked them).
_MALFORMED: list[tuple[str, bytes]] = [
    ("openai", b'{"choices": [null]}'),
    ("openai", b'{"choices": [{"message": null}]}'),
    ("openai", b'{"choices": [{"message": {"role": "assistant", "content": 5}}]}'),
    ("openai", b'{"choices": [{"message": {"content": null, "tool_calls": [{"function": 1}]}}]}'),
    ("openai", b'{"choices": []}'),
    ("azure_openai", b'{"choices": "x"}'),
    ("anthropic", b"[]"),
    ("anthropic", b"null"),
    ("anthropic", b"{}"),
    ("anthropic", b'{"content": 5}'),
    ("anthropic", b'{"content": [null]}'),
    ("anthropic", b'{"content": [{"type": "text", "text": 5}]}'),
    ("gemini", b'{"candidates": [null]}'),
    ("gemini", b'{"candidates": [{"content": {"parts": [{"text": 5}]}}]}'),
    ("bedrock", b'"str"'),
    ("bedrock", b"{}"),
    ("bedrock", b'{"output": {"message": {"content": [5]}}}'),
]


@pytest.mark.parametrize("kind,body", _MALFORMED,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(_MALFORMED)])
async def test_answer_in_the_wrong_shape_is_an_upstream_error_never_a_500(
        kind: str, body: bytes, tmp_path: Path) -> None:
    reply = Reply(200, body, {"content-type": "application/json"})
    assert_one_upstream_error(*await refused_by_gateway(tmp_path, kind, reply, stream=False))
