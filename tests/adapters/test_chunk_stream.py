"""ChunkStream on its own: the text it hands the relay, the usage estimate when the provider
reports none, and a cancelled wait that loses nothing (the relay's held-window timer cancels
waits, pep.streaming)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp.streams import StreamReader

from adapters.openai import StreamTranslator
from adapters.types import Served, Target
from pep.routing.settings import ProviderSettings
from pep.routing.stream import ChunkStream, choices_text

TARGET = Target("p", ProviderSettings(kind="openai_compatible", base_url="http://x/v1"),
                "up-model", "mock-gpt")


class _Protocol:
    """What an aiohttp StreamReader asks of its protocol."""

    _reading_paused = False
    connected = True

    def pause_reading(self, **_: Any) -> None:
        pass

    def resume_reading(self, **_: Any) -> None:
        pass


def frame(doc: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(doc) + b"\n\n"


def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}


def reader() -> StreamReader:
    return StreamReader(_Protocol(), 2**16, loop=asyncio.get_running_loop())  # type: ignore[arg-type]


def stream_of(sr: StreamReader, *, prompt_estimate: int = 7) -> ChunkStream:
    released: list[bool] = []
    return ChunkStream(sr.readany, lambda: released.append(True), StreamTranslator(TARGET),
                       served=Served("p", "openai_compatible", "up-model"), include_usage=False,
                       prompt_estimate=prompt_estimate, label="test provider")


CALL = {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                        "function": {"name": "f", "arguments": '{"a": 1}'}}]}


async def test_each_chunk_carries_its_answer_text_content_and_tool_arguments() -> None:
    sr = reader()
    sr.feed_data(frame(chunk({"role": "assistant", "content": ""})) + frame(chunk({"content": "Hi"}))
                 + frame(chunk(CALL)) + frame(chunk({}, finish_reason="stop")))
    sr.feed_eof()
    cs = stream_of(sr)
    texts = [cs.text async for _ in cs]
    assert texts == ["", "Hi", '{"a": 1}', ""]


async def test_usage_is_estimated_from_the_streamed_text_when_the_provider_reports_none() -> None:
    sr = reader()
    sr.feed_data(frame(chunk({"content": "Hello there"})) + frame(chunk(CALL)) + b"data: [DONE]\n\n")
    sr.feed_eof()
    cs = stream_of(sr, prompt_estimate=7)
    [c async for c in cs]
    assert cs.usage is not None
    chars = len("Hello there") + len('{"a": 1}')
    assert (cs.usage.prompt_tokens, cs.usage.completion_tokens, cs.usage.estimated) == (
        7, (chars + 3) // 4, True)


async def test_the_providers_usage_wins_over_the_estimate() -> None:
    sr = reader()
    usage = {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43}
    sr.feed_data(frame(chunk({"content": "Hello there"}))
                 + frame({**chunk({}), "choices": [], "usage": usage}))
    sr.feed_eof()
    cs = stream_of(sr)
    [c async for c in cs]
    assert cs.usage is not None
    assert (cs.usage.prompt_tokens, cs.usage.completion_tokens, cs.usage.estimated) == (
        40, 3, False)


@pytest.mark.parametrize("delta", [{"tool_calls": ["sk-not-an-object"]},
                                   {"tool_calls": [{"function": "sk-not-an-object"}]}])
async def test_a_chunk_whose_tool_call_is_not_an_object_is_never_handed_on_unread(
    delta: dict[str, Any],
) -> None:
    sr = reader()
    sr.feed_data(frame(chunk(delta)))
    sr.feed_eof()
    with pytest.raises(AttributeError):
        await stream_of(sr).__anext__()


def test_choices_text_joins_every_choice() -> None:
    choices = [{"delta": {"content": "a"}}, {"delta": {"content": "b", **CALL}}, {"delta": None}]
    assert choices_text(choices) == 'ab{"a": 1}'


async def test_a_cancelled_wait_loses_no_bytes_and_the_next_wait_continues() -> None:
    sr = reader()
    cs = stream_of(sr)
    waiting = asyncio.ensure_future(cs.__anext__())
    await asyncio.sleep(0)
    assert not cs.ready()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    first, second = frame(chunk({"content": "one "})), frame(chunk({"content": "two"}))
    sr.feed_data(first[:10])  # half an event, then the rest: nothing may be dropped
    waiting = asyncio.ensure_future(cs.__anext__())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    sr.feed_data(first[10:] + second)
    sr.feed_eof()
    assert [c["choices"][0]["delta"]["content"] async for c in cs] == ["one ", "two"]
    assert cs.ready()  # ended: __anext__ no longer waits
