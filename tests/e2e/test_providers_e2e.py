"""Issue 6, end to end: the official openai and anthropic SDKs against the running gateway,
routed to each provider's local fake (plain, streaming, a tool-call round trip), and
fallback recorded in the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.adapters.test_golden import KEY, UPSTREAM_MODEL
from tests.fakes import wire
from tests.fakes.server import FakeServer, Reply
from tests.harness import running_gateway

PROVIDERS = ["openai", "azure_openai", "anthropic", "gemini", "bedrock"]
QUESTION = "What is the weather in Paris?"
TOOL = {"name": "get_weather", "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}


def provider(kind: str, url: str) -> dict[str, Any]:
    if kind == "bedrock":
        return {"kind": kind, "base_url": url, "region": "us-east-1",
                "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": KEY}
    return {"kind": kind, "base_url": url, "api_key": KEY}


def routed_to(kind: str, fake: FakeServer) -> dict[str, Any]:
    return {"providers": {"p": provider(kind, fake.url)},
            "models": {"mock-gpt": {"provider": "p", "model": UPSTREAM_MODEL[kind]}}}


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_openai_sdk_plain_stream_and_tool_round_trip(kind: str, tmp_path: Path) -> None:
    async with FakeServer(wire.script(kind)) as fake, \
            running_gateway(tmp_path, config=routed_to(kind, fake)) as gw:
        client = gw.openai("alice")
        ask = [{"role": "user", "content": QUESTION}]
        plain = await client.chat.completions.create(model="mock-gpt", messages=ask)
        assert plain.choices[0].message.content == "It is 18°C in Paris."
        assert plain.usage is not None and plain.usage.prompt_tokens == 42

        stream = await client.chat.completions.create(
            model="mock-gpt", messages=ask, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
            usage = chunk.usage or usage
        assert text == "It is 18°C in Paris." and usage is not None
        assert usage.completion_tokens == 11

        tools = [{"type": "function", "function": TOOL}]
        first = await client.chat.completions.create(model="mock-gpt", messages=ask, tools=tools)
        call = first.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert orjson.loads(call.function.arguments) == {"city": "Paris"}
        follow = ask + [first.choices[0].message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c":18}'}]
        final = await client.chat.completions.create(model="mock-gpt", messages=follow,
                                                     tools=tools)
        assert final.choices[0].message.content == "It is 18°C in Paris."
    for rec in fake.requests:
        assert gw.token("alice") not in str(rec.headers)  # the user's token never leaves


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_anthropic_sdk_plain_stream_and_tool_round_trip(kind: str, tmp_path: Path) -> None:
    async with FakeServer(wire.script(kind)) as fake, \
            running_gateway(tmp_path, config=routed_to(kind, fake)) as gw:
        client = gw.anthropic("alice")
        ask = [{"role": "user", "content": QUESTION}]
        plain = await client.messages.create(model="mock-gpt", max_tokens=100, messages=ask)
        assert plain.content[0].text == "It is 18°C in Paris."
        assert plain.stop_reason == "end_turn" and plain.usage.output_tokens == 11

        async with client.messages.stream(model="mock-gpt", max_tokens=100,
                                          messages=ask) as stream:
            text = "".join([t async for t in stream.text_stream])
            message = await stream.get_final_message()
        assert text == "It is 18°C in Paris." and message.usage.output_tokens == 11

        tools = [{"name": TOOL["name"], "description": TOOL["description"],
                  "input_schema": TOOL["parameters"]}]
        first = await client.messages.create(model="mock-gpt", max_tokens=100, messages=ask,
                                             tools=tools)
        use = next(b for b in first.content if b.type == "tool_use")
        assert first.stop_reason == "tool_use" and use.input == {"city": "Paris"}
        follow = ask + [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                        {"role": "user", "content": [{"type": "tool_result",
                                                      "tool_use_id": use.id,
                                                      "content": '{"temp_c":18}'}]}]
        final = await client.messages.create(model="mock-gpt", max_tokens=100, messages=follow,
                                             tools=tools)
        assert final.content[0].text == "It is 18°C in Paris."

        async with client.messages.stream(model="mock-gpt", max_tokens=100, messages=ask,
                                          tools=tools) as stream:
            streamed = await stream.get_final_message()
        use = next(b for b in streamed.content if b.type == "tool_use")
        assert use.name == "get_weather" and use.input == {"city": "Paris"}


@pytest.mark.parametrize("failure", [
    Reply(500, b'{"error":{"message":"boom"}}'),
    Reply(429, b'{"error":{"message":"slow down"}}', {"retry-after": "1"}),
    Reply(200, b"{}", delay_s=2.0),
], ids=["500", "429", "timeout"])
async def test_second_deployment_serves_and_the_audit_names_it(failure: Reply,
                                                                tmp_path: Path) -> None:
    async with FakeServer([failure]) as first, FakeServer(wire.script("anthropic")) as second:
        config = {
            "providers": {
                "primary": {"kind": "openai", "base_url": first.url, "api_key": KEY,
                            "max_retries": 0, "first_byte_timeout_s": 0.5},
                "backup": provider("anthropic", second.url)},
            "models": {"mock-gpt": {"provider": "primary", "model": "gpt-4o-mini",
                                    "fallbacks": [{"provider": "backup",
                                                   "model": "claude-3-5-haiku-20241022"}]}},
        }
        async with running_gateway(tmp_path, config=config) as gw:
            resp = await gw.openai("alice").chat.completions.with_raw_response.create(
                model="mock-gpt", messages=[{"role": "user", "content": QUESTION}])
            assert resp.parse().choices[0].message.content == "It is 18°C in Paris."
            rid = resp.headers["x-request-id"]
            
            events = [e for e in await gw.audit_records() if e["request_id"] == rid]
    completion = next(e for e in events if e["event"] == "request.completion")
    assert "backup/claude-3-5-haiku-20241022" in orjson.dumps(completion).decode()
    assert len(first.requests) == 1 and len(second.requests) == 1


async def test_the_gateway_never_sends_a_provider_cookie_back(tmp_path: Path) -> None:
    # A provider behind Cloudflare sets cookies on its answers; the gateway's provider
    # session is shared by every user, so a cookie alice's answer brought must not ride
    # along with bob's request (reached by host name: aiohttp's default jar ignores IPs).
    answer = wire.plain("openai")
    answer.headers = {**answer.headers,
                      "set-cookie": "__cf_bm=alice-token; path=/; domain=localhost; HttpOnly"}
    async with FakeServer(lambda _: answer) as fake:
        url = fake.url.replace("127.0.0.1", "localhost")
        config = {"providers": {"p": provider("openai", url)},
                  "models": {"mock-gpt": {"provider": "p", "model": UPSTREAM_MODEL["openai"]}}}
        async with running_gateway(tmp_path, config=config) as gw:
            ask = [{"role": "user", "content": QUESTION}]
            for user in ("alice", "bob"):
                await gw.openai(user).chat.completions.create(model="mock-gpt", messages=ask)
    assert len(fake.requests) == 2
    assert all("cookie" not in r.headers for r in fake.requests)
