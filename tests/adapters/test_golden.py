"""Golden wire fixtures, per provider, through the real router and a local fake server.

For each provider: the exact request it receives for a canonical conversation with a
tool call and its result (``upstream_request.json``), and how its documented answers --
plain, tool call, SSE / event-stream, text and tool call -- come back as OpenAI objects.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from adapters.types import Completion
from pep.routing.router import Router
from pep.routing.settings import ModelSettings, ProviderSettings
from pep.routing.stream import ChunkStream
from tests.fakes import wire
from tests.adapters.routed import route_fails
from tests.fakes.server import FakeServer, Reply

PROVIDERS = ["openai", "azure_openai", "anthropic", "gemini", "bedrock"]
UPSTREAM_MODEL = {
    "openai": "gpt-4o-mini", "azure_openai": "gpt4o-prod", "anthropic":
    "claude-3-5-haiku-20241022", "gemini": "gemini-2.0-flash",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
KEY = "secret-provider-key-123"


def provider_settings(kind: str, url: str, **kw: Any) -> ProviderSettings:
    extra: dict[str, Any] = {"api_key": KEY}
    if kind == "bedrock":
        extra = {"region": "us-east-1", "aws_access_key_id": "AKIDEXAMPLE",
                 "aws_secret_access_key": KEY}
    return ProviderSettings(kind=kind, base_url=url, max_retries=0, **extra, **kw)


def router_for(kind: str, url: str, session: aiohttp.ClientSession, **kw: Any) -> Router:
    return Router({"p": provider_settings(kind, url, **kw)},
                  {"assistant": ModelSettings(provider="p", model=UPSTREAM_MODEL[kind])}, session)


def canonical(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads((wire.FIXTURES / "canonical_request.json").read_bytes())
    body.update(extra)
    return body


def question(**extra: Any) -> dict[str, Any]:
    body = canonical(**extra)
    body["messages"] = body["messages"][:2]
    return body


async def collect(cs: ChunkStream) -> tuple[str, dict[int, dict[str, str]], list[str | None]]:
    text, finishes = "", []
    calls: dict[int, dict[str, str]] = {}
    async for chunk in cs:
        for c in chunk["choices"]:
            delta = c["delta"]
            text += delta.get("content") or ""
            for tc in delta.get("tool_calls") or ():
                slot = calls.setdefault(tc["index"], {"id": "", "name": "", "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] = (tc.get("function") or {}).get("name") or slot["name"]
                slot["arguments"] += (tc.get("function") or {}).get("arguments") or ""
            if c.get("finish_reason"):
                finishes.append(c["finish_reason"])
    return text, calls, finishes


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_provider_receives_the_documented_request(kind: str,
                                                        session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.plain(kind)]) as fake:
        await router_for(kind, fake.url, session).chat(canonical(), "assistant", request_id="r")
    sent = fake.requests[0]
    golden = wire.load(kind, "upstream_request.json")
    assert sent.method == golden["method"] and sent.path == golden["path"]
    assert sent.query == golden["query"]
    for name, value in golden["headers"].items():
        assert sent.headers[name] == value, name
    assert orjson.loads(sent.body) == golden["body"]


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_provider_answer_becomes_a_chat_completion(kind: str,
                                                         session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.plain(kind)]) as fake:
        c = await router_for(kind, fake.url, session).chat(question(), "assistant",
                                                           request_id="r")
    assert isinstance(c, Completion)
    choice = c.body["choices"][0]
    assert choice["message"]["content"] == "It is 18°C in Paris."
    assert choice["finish_reason"] == "stop"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.estimated) == (42, 11, False)
    assert c.body["model"] == "assistant" and c.body["object"] == "chat.completion"


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_provider_tool_call_becomes_tool_calls(kind: str,
                                                     session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.plain(kind, "response_tool")]) as fake:
        c = await router_for(kind, fake.url, session).chat(question(), "assistant",
                                                           request_id="r")
    assert isinstance(c, Completion)
    choice = c.body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_provider_stream_becomes_chunks(kind: str, session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.stream(kind)]) as fake:
        cs = await router_for(kind, fake.url, session).chat(
            question(stream=True, stream_options={"include_usage": True}), "assistant",
            request_id="r")
        assert isinstance(cs, ChunkStream)
        text, calls, finishes = await collect(cs)
    assert text == "It is 18°C in Paris." and not calls and finishes == ["stop"]
    assert cs.usage is not None
    assert (cs.usage.prompt_tokens, cs.usage.completion_tokens, cs.usage.estimated) == (42, 11,
                                                                                        False)


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_provider_streamed_tool_call_becomes_tool_call_chunks(
        kind: str, session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.stream(kind, "stream_tool")]) as fake:
        cs = await router_for(kind, fake.url, session).chat(question(stream=True), "assistant",
                                                            request_id="r")
        assert isinstance(cs, ChunkStream)
        text, calls, finishes = await collect(cs)
    assert text == "Let me check." and finishes == ["tool_calls"]
    assert calls[0]["name"] == "get_weather" and calls[0]["id"]
    assert orjson.loads(calls[0]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize("kind,param,value", [
    ("anthropic", "logit_bias", {"50256": -100}), ("anthropic", "seed", 7),
    ("gemini", "user", "u-1"), ("gemini", "logprobs", True),
    ("bedrock", "seed", 7), ("bedrock", "presence_penalty", 0.5),
    ("openai", "not_an_openai_parameter", 1),
])
async def test_unsupported_parameter_is_a_400_and_nothing_is_sent(
        kind: str, param: str, value: Any, session: aiohttp.ClientSession) -> None:
    from pep.errors import BadRequest

    async with FakeServer([wire.plain(kind)]) as fake:
        with route_fails(BadRequest) as e:
            await router_for(kind, fake.url, session).chat(question(**{param: value}),
                                                           "assistant", request_id="r")
    assert e.value.param == param and e.value.status == 400
    assert not fake.requests


@pytest.mark.parametrize("kind,status,body", [
    ("anthropic", 429, b'{"type":"error","error":{"type":"rate_limit_error","message":"slow"}}'),
    ("gemini", 429, b'{"error":{"code":429,"message":"slow","status":"RESOURCE_EXHAUSTED"}}'),
    ("bedrock", 429, b'{"message":"Too many requests, please wait before trying again."}'),
])
async def test_provider_rate_limit_passes_retry_after_on(
        kind: str, status: int, body: bytes, session: aiohttp.ClientSession) -> None:
    from pep.errors import RateLimited

    async with FakeServer([Reply(status, body, {"content-type": "application/json",
                                                "retry-after": "30"})]) as fake:
        with route_fails(RateLimited) as e:
            await router_for(kind, fake.url, session).chat(question(), "assistant",
                                                           request_id="r")
    assert e.value.headers["Retry-After"] == "30"


async def test_anthropic_overloaded_is_bad_gateway(session: aiohttp.ClientSession) -> None:
    from pep.errors import UpstreamError

    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    async with FakeServer([Reply(529, body)]) as fake:
        with route_fails(UpstreamError) as e:
            await router_for("anthropic", fake.url, session).chat(question(), "assistant",
                                                                  request_id="r")
    assert e.value.status == 502 and e.value.code == "upstream_unavailable"
    assert e.value.details["provider_code"] == "overloaded_error"
    assert "Overloaded" not in e.value.message  # the provider's text is never passed on


async def test_bedrock_stream_exception_before_first_chunk_falls_back(
        session: aiohttp.ClientSession) -> None:
    from tests.fakes import eventstream

    throttled = Reply(200, headers=dict(wire.EVENTSTREAM),
                      chunks=[eventstream.exception("throttlingException", "slow down")])
    async with FakeServer([throttled]) as a, FakeServer([wire.stream("bedrock")]) as b:
        providers = {"a": provider_settings("bedrock", a.url),
                     "b": provider_settings("bedrock", b.url)}
        models = {"assistant": ModelSettings(provider="a", model="m1", fallbacks=(
            {"provider": "b", "model": "m2"},))}
        cs = await Router(providers, models, session).chat(question(stream=True), "assistant",
                                                           request_id="r")
        assert isinstance(cs, ChunkStream)
        text, _, _ = await collect(cs)
    assert text == "It is 18°C in Paris."
    assert cs.served.provider == "b"
    assert cs.served.attempts[0]["status"] == 200 and cs.served.attempts[0]["outcome"] == "error"


async def test_bedrock_request_carries_a_valid_sigv4_signature(
        session: aiohttp.ClientSession) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    async with FakeServer([wire.plain("bedrock")]) as fake:
        await router_for("bedrock", fake.url, session).chat(question(), "assistant",
                                                            request_id="r")
    sent = fake.requests[0]
    auth = sent.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/bedrock/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    req = AWSRequest(method="POST", url=fake.url + sent.path, data=sent.body,
                     headers={h: sent.headers[h] for h in signed})
    req.context["timestamp"] = sent.headers["x-amz-date"]
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", KEY), "bedrock", "us-east-1")
    expected = signer.signature(signer.string_to_sign(req, signer.canonical_request(req)), req)
    assert auth.endswith("Signature=" + expected)
    assert KEY not in str(sent.headers)
