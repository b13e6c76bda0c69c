"""A cached answer replays as a canonical stream and a stream assembles into one completion:
the round trip keeps text, tool calls and finish reason."""

from __future__ import annotations

from adapters.types import Usage
from pep.cache.replay import assemble, replay_chunks
from tests.fakes.openai_wire import completion, stream_chunks

CALL = {"id": "call_1", "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}


def test_a_stream_assembles_into_the_completion_it_streamed() -> None:
    body = assemble(stream_chunks(["Par", "is"], tool_calls=[CALL]))
    assert body is not None
    (choice,) = body["choices"]
    assert choice["message"]["content"] == "Paris"
    assert choice["message"]["tool_calls"] == [CALL]
    assert choice["finish_reason"] == "tool_calls"


def test_a_stream_that_never_finished_is_not_a_completion() -> None:
    assert assemble(stream_chunks(["Par", "is"])[:-2]) is None


def test_replayed_chunks_assemble_back_to_the_cached_answer() -> None:
    cached = completion("Paris", tool_calls=[CALL], finish="tool_calls")
    chunks = replay_chunks(cached, Usage(9, 3), include_usage=True, request_id="req_1")
    assert chunks[-1] == {**chunks[-1], "choices": [], "usage": Usage(9, 3).to_openai()}
    again = assemble(chunks)
    assert again is not None
    assert again["choices"][0]["message"]["content"] == "Paris"
    assert again["choices"][0]["message"]["tool_calls"] == [CALL]
    assert all(c["id"] == "chatcmpl-req_1" for c in chunks)
