"""The Responses API wire format, checked against OpenAI's own reference.

``fixtures/responses/openapi_shapes.json`` lists, for every streaming event and object the
gateway emits, the properties and required fields of its schema in OpenAI's OpenAPI document
(openai/openai-openapi, commit f85dbe2). Every event and object the encoder produces must
carry every required field and nothing the schema does not define. ``text_stream.sse`` and
``tool_stream.sse`` are golden streams (ids, clock and text as in the reference's examples:
``msg_123``, ``"In"`` ...), compared byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pep.errors import UpstreamError
from pep.inbound.responses import ResponseContext, ResponsesStreamEncoder, to_canonical

FIXTURES = Path(__file__).parent / "fixtures" / "responses"
SHAPES = orjson.loads((FIXTURES / "openapi_shapes.json").read_bytes())


def ctx(**body: Any) -> ResponseContext:
    return ResponseContext({"model": "gpt-4o-mini-2024-07-18", "input": "x", **body},
                           response_id="resp_123", created_at=1740855869,
                           new_id=lambda prefix: f"{prefix}_123", clock=lambda: 1740855870.0)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None,
          usage: dict[str, Any] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk",
                           "choices": [] if delta is None else [
                               {"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage is not None:
        doc["usage"] = usage
    return doc


USAGE = {"prompt_tokens": 36, "completion_tokens": 3, "total_tokens": 39,
         "prompt_tokens_details": {"cached_tokens": 4}}

TEXT = [chunk({"role": "assistant", "content": "In"}), chunk({"content": " a"}),
        chunk({"content": " forest."}), chunk({}, "stop"), chunk(None, usage=USAGE)]
TOOL = [chunk({"role": "assistant", "tool_calls": [
            {"index": 0, "id": "call_123", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{ \"arg\":"}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": " 123 }"}}]}),
        chunk({}, "tool_calls"), chunk(None, usage=USAGE)]


def encode(chunks: list[dict[str, Any]], c: ResponseContext | None = None) -> bytes:
    enc = ResponsesStreamEncoder(c or ctx())
    return b"".join(enc.encode(ch) for ch in chunks) + enc.close()


def events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            out.append((name.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def assert_shape(doc: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    keys = set(doc)
    assert set(shape["required"]) <= keys, (where, set(shape["required"]) - keys)
    assert keys <= set(shape["properties"]), (where, keys - set(shape["properties"]))


def assert_objects(doc: dict[str, Any], where: str) -> None:
    objects = SHAPES["objects"]
    for key in ("response",):
        if isinstance(doc.get(key), dict):
            resp = doc[key]
            assert_shape(resp, objects["response"], where + ".response")
            if resp.get("usage") is not None:
                assert_shape(resp["usage"], objects["usage"], where + ".usage")
            for item in resp["output"]:
                assert_objects({"item": item}, where)
    item = doc.get("item")
    if isinstance(item, dict):
        assert_shape(item, objects[item["type"]], where + ".item")
        for part in item.get("content") or ():
            assert_shape(part, objects["output_text"], where + ".part")
    if isinstance(doc.get("part"), dict):
        assert_shape(doc["part"], objects["output_text"], where + ".part")


@pytest.mark.parametrize("name, chunks", [("text_stream", TEXT), ("tool_stream", TOOL)])
def test_stream_matches_the_golden_wire_bytes(name: str, chunks: list[dict[str, Any]]) -> None:
    assert encode(chunks) == (FIXTURES / f"{name}.sse").read_bytes()


@pytest.mark.parametrize("chunks", [TEXT, TOOL, TEXT[:2]])
def test_every_event_has_exactly_the_fields_of_its_openapi_schema(
    chunks: list[dict[str, Any]],
) -> None:
    seen = events(encode(chunks))
    for i, (name, doc) in enumerate(seen):
        assert doc["type"] == name and doc["sequence_number"] == i
        assert_shape(doc, SHAPES["events"][name], name)
        assert_objects(doc, name)


def test_failure_mid_stream_is_an_error_event_then_response_failed() -> None:
    enc = ResponsesStreamEncoder(ctx())
    raw = enc.encode(TEXT[0]) + enc.error(UpstreamError("provider stream broke"))
    seen = events(raw)
    names = [n for n, _ in seen]
    assert names[-2:] == ["error", "response.failed"]
    for name, doc in seen:
        assert_shape(doc, SHAPES["events"][name], name)
        assert_objects(doc, name)
    failed = seen[-1][1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "upstream_error"
    assert failed["output"][0]["status"] == "incomplete"


def test_length_and_content_filter_end_as_response_incomplete() -> None:
    for finish, reason in (("length", "max_output_tokens"), ("content_filter", "content_filter")):
        seen = events(encode([TEXT[0], chunk({}, finish)]))
        name, doc = seen[-1]
        assert name == "response.incomplete"
        assert doc["response"]["status"] == "incomplete"
        assert doc["response"]["incomplete_details"] == {"reason": reason}


def test_completed_response_equals_the_plain_rendering_of_the_same_answer() -> None:
    c = ctx()
    enc = ResponsesStreamEncoder(c)
    for ch in TEXT:
        enc.encode(ch)
    enc.close()
    plain = ctx().render({"model": "gpt-4o-mini-2024-07-18", "usage": USAGE, "choices": [
        {"index": 0, "finish_reason": "stop",
         "message": {"role": "assistant", "content": "In a forest."}}]})
    assert enc.final == plain


def test_request_translation_merges_function_calls_into_the_assistant_turn() -> None:
    body = {"model": "m", "instructions": "sys", "input": [
        {"role": "user", "content": "weather?"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"a\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "rain"}]},
    ], "max_output_tokens": 50, "tools": [{"type": "function", "name": "w", "strict": True,
                                           "parameters": {"type": "object"}}]}
    out = to_canonical(body, history=[{"role": "user", "content": "earlier"}])
    assert out["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "earlier"},
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]
    assert out["max_tokens"] == 50
    assert out["tools"] == [{"type": "function", "function": {
        "name": "w", "parameters": {"type": "object"}, "strict": True}}]
