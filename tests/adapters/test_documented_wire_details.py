"""Wire details checked against each provider's API reference, beyond the golden round trip.

Sources: Gemini thought signatures (ai.google.dev/gemini-api/docs/thought-signatures),
Gemini UsageMetadata / FinishReason (ai.google.dev/api/generate-content), Bedrock TokenUsage
and StopReason (docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_TokenUsage.html,
API_runtime_MessageStopEvent.html), Anthropic tool_choice (docs.anthropic.com/en/api/messages).
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import orjson

from adapters.types import Completion
from pep.routing.stream import ChunkStream
from tests.adapters.test_golden import collect, question, router_for
from tests.fakes import wire
from tests.fakes.server import FakeServer, Reply

SIGNATURE = "CvcBAY8a3q+wEf/Zm1kXo9u2B3T1Lr0h++8="  # base64 with + / =, as in fixtures/gemini/*_tool.*
ID_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+$")


def _round_trip(call: dict[str, Any]) -> dict[str, Any]:
    """The conversation a client sends after running the tool the model asked for."""
    body = question()
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": '{"temp_c":18}'},
    ]
    return body


def _sent_function_call_part(body: bytes) -> dict[str, Any]:
    contents = orjson.loads(body)["contents"]
    model_turn = next(c for c in contents if c["role"] == "model")
    part: dict[str, Any] = next(p for p in model_turn["parts"] if "functionCall" in p)
    return part


async def test_gemini_thought_signature_goes_back_on_its_function_call(
        session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.plain("gemini", "response_tool"), wire.plain("gemini")]) as fake:
        router = router_for("gemini", fake.url, session)
        first = await router.chat(question(), "assistant", request_id="r1")
        assert isinstance(first, Completion)
        call = first.body["choices"][0]["message"]["tool_calls"][0]
        await router.chat(_round_trip(call), "assistant", request_id="r2")
    assert ID_ALPHABET.match(call["id"])
    part = _sent_function_call_part(fake.requests[1].body)
    assert part["thoughtSignature"] == SIGNATURE
    assert part["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}


async def test_gemini_streamed_thought_signature_goes_back_on_its_function_call(
        session: aiohttp.ClientSession) -> None:
    async with FakeServer([wire.stream("gemini", "stream_tool"), wire.plain("gemini")]) as fake:
        router = router_for("gemini", fake.url, session)
        cs = await router.chat(question(stream=True), "assistant", request_id="r1")
        assert isinstance(cs, ChunkStream)
        _, calls, _ = await collect(cs)
        call = {"id": calls[0]["id"], "type": "function",
                "function": {"name": calls[0]["name"], "arguments": calls[0]["arguments"]}}
        await router.chat(_round_trip(call), "assistant", request_id="r2")
    assert _sent_function_call_part(fake.requests[1].body)["thoughtSignature"] == SIGNATURE


async def test_gemini_call_without_signature_sends_none(session: aiohttp.ClientSession) -> None:
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    async with FakeServer([wire.plain("gemini")]) as fake:
        await router_for("gemini", fake.url, session).chat(_round_trip(call), "assistant",
                                                            request_id="r")
    assert "thoughtSignature" not in _sent_function_call_part(fake.requests[0].body)


def _gemini_reply(finish: str, usage: dict[str, int]) -> Reply:
    doc = {"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"},
                           "finishReason": finish, "index": 0}], "usageMetadata": usage}
    return Reply(200, orjson.dumps(doc), dict(wire.JSON))


async def test_gemini_tool_use_prompt_and_thought_tokens_are_counted(
        session: aiohttp.ClientSession) -> None:
    usage = {"promptTokenCount": 42, "toolUsePromptTokenCount": 5, "candidatesTokenCount": 11,
             "thoughtsTokenCount": 3, "totalTokenCount": 61}
    async with FakeServer([_gemini_reply("STOP", usage)]) as fake:
        c = await router_for("gemini", fake.url, session).chat(question(), "assistant",
                                                                request_id="r")
    assert isinstance(c, Completion)
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (47, 14)
    assert c.body["usage"]["total_tokens"] == usage["totalTokenCount"]


async def test_gemini_image_safety_finish_is_content_filter(
        session: aiohttp.ClientSession) -> None:
    async with FakeServer([_gemini_reply("IMAGE_SAFETY", {"promptTokenCount": 1})]) as fake:
        c = await router_for("gemini", fake.url, session).chat(question(), "assistant",
                                                                request_id="r")
    assert isinstance(c, Completion)
    assert c.body["choices"][0]["finish_reason"] == "content_filter"


def _bedrock_reply(stop: str, usage: dict[str, int]) -> Reply:
    doc = {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
           "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 1}}
    return Reply(200, orjson.dumps(doc), dict(wire.JSON))


async def test_bedrock_cache_read_and_write_tokens_count_as_prompt(
        session: aiohttp.ClientSession) -> None:
    usage = {"inputTokens": 4, "outputTokens": 11, "cacheReadInputTokens": 1500,
             "cacheWriteInputTokens": 30, "totalTokens": 1545}
    async with FakeServer([_bedrock_reply("end_turn", usage)]) as fake:
        c = await router_for("bedrock", fake.url, session).chat(question(), "assistant",
                                                                 request_id="r")
    assert isinstance(c, Completion)
    assert (c.usage.prompt_tokens, c.usage.completion_tokens) == (1534, 11)


async def test_bedrock_context_window_exceeded_is_length(
        session: aiohttp.ClientSession) -> None:
    usage = {"inputTokens": 4, "outputTokens": 11, "totalTokens": 15}
    async with FakeServer([_bedrock_reply("model_context_window_exceeded", usage)]) as fake:
        c = await router_for("bedrock", fake.url, session).chat(question(), "assistant",
                                                                 request_id="r")
    assert isinstance(c, Completion)
    assert c.body["choices"][0]["finish_reason"] == "length"


async def test_anthropic_tool_choice_none_carries_no_parallel_flag(
        session: aiohttp.ClientSession) -> None:
    body = question(tool_choice="none", parallel_tool_calls=False)
    async with FakeServer([wire.plain("anthropic")]) as fake:
        await router_for("anthropic", fake.url, session).chat(body, "assistant", request_id="r")
    assert orjson.loads(fake.requests[0].body)["tool_choice"] == {"type": "none"}
