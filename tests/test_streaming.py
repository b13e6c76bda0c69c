"""The relay's read of its stream (pep.streaming._Upstream): the held window's timer ends a
wait without losing what arrives after it, and a cancellation that is not the timer's still
cancels. The relay's bytes end to end: tests/e2e/test_stream_relay_e2e.py and
tests/e2e/test_content_edges_e2e.py (the time bound while the upstream waits)."""

from __future__ import annotations

import asyncio

from pep import streaming
from pep.cache.replay import ReplayStream
from adapters.types import Served, Usage
from tests.adapters.test_chunk_stream import chunk, frame, reader, stream_of


async def test_the_deadline_ends_a_wait_and_the_next_wait_gets_what_arrived_after_it() -> None:
    sr = reader()
    up = streaming._Upstream(stream_of(sr))
    loop = asyncio.get_running_loop()
    assert await up.next(loop.time() + 0.01) is streaming._TIMEOUT
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the timer's cancel did not leak
    await asyncio.sleep(0)  # nor is a cancellation still pending for the next await
    sr.feed_data(frame(chunk({"content": "one"})))
    loop.call_later(0.01, sr.feed_eof)
    got = await up.next(loop.time() + 5)
    assert got["choices"][0]["delta"]["content"] == "one"
    assert up.stream.text == "one"
    assert await up.next(None) is streaming._END


async def test_a_chunk_that_is_there_is_returned_even_after_the_deadline() -> None:
    sr = reader()
    sr.feed_data(frame(chunk({"content": "a"})) + frame(chunk({"content": "b"})))
    cs = stream_of(sr)
    up = streaming._Upstream(cs)
    assert (await up.next(None))["choices"][0]["delta"]["content"] == "a"
    assert cs.ready()
    late = asyncio.get_running_loop().time() - 1
    assert (await up.next(late))["choices"][0]["delta"]["content"] == "b"
    assert await up.next(late) is streaming._TIMEOUT  # nothing there: the bound applies


async def test_a_cancellation_that_is_not_the_timers_propagates() -> None:
    sr = reader()

    async def relay() -> object:
        up = streaming._Upstream(stream_of(sr))
        return await up.next(asyncio.get_running_loop().time() + 5)

    task = asyncio.ensure_future(relay())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_a_cancellation_on_top_of_the_timers_propagates() -> None:
    sr = reader()
    outcome: list[str] = []

    async def relay() -> None:
        up = streaming._Upstream(stream_of(sr))
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        assert me is not None
        loop.call_at(loop.time() + 0.01, me.cancel)  # the same moment as the deadline
        try:
            await up.next(loop.time() + 0.01)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("returned")

    task = asyncio.ensure_future(relay())
    await asyncio.gather(task, return_exceptions=True)
    assert outcome == ["cancelled"]


async def test_a_replayed_answer_hands_the_relay_each_chunks_text() -> None:
    body = {"model": "mock-gpt", "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant",
                                                          "content": "cached"}}]}
    rs = ReplayStream(body, Usage(1, 2), Served("p", "mock", "m"), include_usage=False,
                      request_id="r1")
    up = streaming._Upstream(rs)
    texts = []
    while (await up.next(0.0)) is not streaming._END:
        assert rs.ready()
        texts.append(rs.text)
    assert texts == ["", "cached", ""]
