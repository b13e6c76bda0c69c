"""SSE framing under arbitrary splits, and the HTTP mock provider."""

from __future__ import annotations

import aiohttp
import orjson
from aiohttp.test_utils import TestServer

from adapters.mock_server import make_app
from adapters.sse import SSEParser


def test_events_split_at_every_byte_boundary_parse_the_same() -> None:
    data = b"event: a\r\ndata: {\"x\":1}\r\n\r\n: keep-alive\n\ndata: line1\ndata: line2\n\n"
    whole = [(e.event, e.data) for e in SSEParser().feed(data)]
    assert whole == [("a", '{"x":1}'), (None, "line1\nline2")]
    for cut in range(1, len(data)):
        p = SSEParser()
        got = [(e.event, e.data) for e in p.feed(data[:cut]) + p.feed(data[cut:])]
        assert got == whole, cut


def test_runs_of_blank_lines_and_multibyte_text_split_anywhere_parse_the_same() -> None:
    # Several blank lines between events, a multi-byte character in data and in an event
    # name, "data:" without its space, a field we ignore, and a one-line data event
    # whose value itself starts with "data: ".
    data = ('data: {"t":"h\u00e9llo \u2603"}\n\n\n\nevent: d\u00e9j\u00e0\ndata:x\nid: 7\n\n'
            "data: data: y\n\n\n: comment\n\ndata: \U0001f600\r\n\r\n").encode()
    whole = [(e.event, e.data) for e in SSEParser().feed(data)]
    assert whole == [(None, '{"t":"h\u00e9llo \u2603"}'), ("d\u00e9j\u00e0", "x"),
                     (None, "data: y"), (None, "\U0001f600")]
    for cut in range(1, len(data)):
        for second in (cut, min(cut + 3, len(data))):
            p = SSEParser()
            got = [(e.event, e.data)
                   for e in p.feed(data[:cut]) + p.feed(data[cut:second]) + p.feed(data[second:])]
            assert got == whole, (cut, second)


def test_unterminated_last_event_is_flushed_at_the_end() -> None:
    p = SSEParser()
    assert p.feed(b"data: tail") == []
    assert [e.data for e in p.finish()] == ["tail"]


async def test_mock_server_answers_chat_stream_and_embeddings() -> None:
    async with TestServer(make_app(), host="127.0.0.1") as server, \
            aiohttp.ClientSession() as s:
        body = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}
        async with s.post(server.make_url("/v1/chat/completions"), json=body) as r:
            doc = await r.json()
        assert doc["choices"][0]["message"]["content"].endswith("You said: ping")
        async with s.post(server.make_url("/v1/chat/completions"),
                          json={**body, "stream": True}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = SSEParser().feed(await r.read())
        assert events[-1].data == "[DONE]"
        text = "".join(orjson.loads(e.data)["choices"][0]["delta"].get("content") or ""
                       for e in events[:-1])
        assert text == doc["choices"][0]["message"]["content"]
        async with s.post(server.make_url("/v1/embeddings"),
                          json={"model": "e", "input": "x", "dimensions": 3}) as r:
            assert len((await r.json())["data"][0]["embedding"]) == 3
        async with s.post(server.make_url("/v1/chat/completions"), data=b"nope") as r:
            assert r.status == 400
