"""The Anthropic Messages dialect: request in, message out, SSE events out, error shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from adapters.sse import SSEParser
from pep.errors import BadRequest, RateLimited, UpstreamError
from pep.inbound.anthropic import AnthropicStreamEncoder, error_body, from_canonical, to_canonical

BASE = {"model": "mock-gpt", "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}]}


def test_system_tools_and_tool_results_map_to_the_canonical_request() -> None:
    body = {
        **BASE, "system": [{"type": "text", "text": "be brief"}], "stop_sequences": ["X"],
        "metadata": {"user_id": "u1"}, "stream": True,
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f",
                                               "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                          "content": "42"},
                                         {"type": "text", "text": "thanks"}]},
        ],
    }
    out = to_canonical(body)
    assert out["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
        {"role": "user", "content": "thanks"},
    ]
    assert out["stop"] == ["X"] and out["user"] == "u1" and out["tool_choice"] == "required"
    assert out["parallel_tool_calls"] is False
    assert out["stream_options"] == {"include_usage": True}
    assert out["tools"][0]["function"]["parameters"] == {"type": "object"}


def test_base64_image_becomes_a_data_url_part() -> None:
    img = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                       "data": "AAAA"}}
    out = to_canonical({**BASE, "messages": [{"role": "user", "content": [
        img, {"type": "text", "text": "what is it"}]}]})
    assert out["messages"][0]["content"][0] == {"type": "image_url",
                                                "image_url": {"url": "data:image/png;base64,AAAA"}}


@pytest.mark.parametrize("change,param", [
    ({"max_tokens": None}, "max_tokens"), ({"top_k": 5}, "top_k"),
    ({"thinking": {"type": "enabled"}}, "thinking"), ({"messages": []}, "messages"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": [{"type": "document"}]}]},
     "messages[0].content[0]"),
])
def test_invalid_or_unrepresentable_requests_are_rejected(change: dict[str, Any],
                                                          param: str) -> None:
    with pytest.raises(BadRequest) as e:
        to_canonical({**BASE, **change})
    assert e.value.param == param


def test_completion_with_tool_call_becomes_a_message() -> None:
    msg = from_canonical({
        "id": "chatcmpl-1", "model": "mock-gpt", "usage": {"prompt_tokens": 3,
                                                            "completion_tokens": 4},
        "choices": [{"finish_reason": "tool_calls", "message": {
            "content": "checking", "tool_calls": [{"id": "c1", "function": {
                "name": "f", "arguments": '{"x":2}'}}]}}]})
    assert msg["id"] == "msg_chatcmpl-1" and msg["stop_reason"] == "tool_use"
    assert msg["content"] == [{"type": "text", "text": "checking"},
                              {"type": "tool_use", "id": "c1", "name": "f", "input": {"x": 2}}]
    assert msg["usage"] == {"input_tokens": 3, "output_tokens": 4}


def _events(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    return [(e.event, orjson.loads(e.data)) for e in SSEParser().feed(data)]


def test_stream_encoder_emits_anthropic_events_in_order() -> None:
    enc = AnthropicStreamEncoder("mock-gpt")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    out = enc.encode(chunk({"role": "assistant", "content": ""}))
    out += enc.encode(chunk({"content": "Hel"})) + enc.encode(chunk({"content": "lo"}))
    out += enc.encode(chunk({"tool_calls": [{"index": 0, "id": "t", "function": {
        "name": "f", "arguments": ""}}]}))
    out += enc.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}))
    out += enc.encode(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}))
    out += enc.encode(chunk({}, "tool_calls"))
    out += enc.encode({"id": "c", "choices": [], "usage": {"prompt_tokens": 5,
                                                           "completion_tokens": 6}})
    out += enc.close()
    events = _events(out)
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "content_block_start",
        "content_block_delta", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop"]
    assert all(name == doc["type"] for name, doc in events)
    assert events[6][1]["content_block"] == {"type": "tool_use", "id": "t", "name": "f",
                                             "input": {}}
    assert events[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":'}
    assert events[10][1]["delta"]["stop_reason"] == "tool_use"
    assert events[10][1]["usage"] == {"input_tokens": 5, "output_tokens": 6}


def test_stream_cut_by_policy_ends_with_refusal() -> None:
    enc = AnthropicStreamEncoder("m")
    out = enc.encode({"id": "c", "choices": [{"index": 0, "delta": {"content": "x"}}]})
    events = _events(out + enc.close("content_filter"))
    assert events[-2][1]["delta"]["stop_reason"] == "refusal"
    assert events[-3][0] == "content_block_stop"


@pytest.mark.parametrize("err,kind", [
    (BadRequest("bad"), "invalid_request_error"), (RateLimited("slow"), "rate_limit_error"),
    (UpstreamError("down"), "api_error"),
])
def test_errors_take_anthropic_shape(err: Any, kind: str) -> None:
    assert error_body(err) == {"type": "error", "error": {"type": kind, "message": err.message}}
