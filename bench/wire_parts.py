#!/usr/bin/env python3
"""CPU of the HTTP path's parts, in process (``time.process_time``), for A/B runs.

    .venv/bin/python bench/wire_parts.py [ROOT] [--part NAME --count K]

ROOT is the checkout whose code is measured (default: this one), so a side of an A/B run
can be another worktree: ``bench/wire_parts.py /path/to/main``. Each figure is the median
of 5 runs of a loop; run A and B alternately, several times, and compare medians (on a
shared machine the absolute figures are inflated). ``--part NAME --count K`` runs one part
K times and prints nothing else, for instruction counts, which the load does not change:
``valgrind --tool=callgrind --callgrind-out-file=/dev/null`` with K and with 0, then
(Ir(K) - Ir(0)) / K per operation. Parts:

* ``translate``: the OpenAI stream translator over the mock provider's whole stream of the
  benchmark question (17 SSE events in one read, as ``adapters.mock_server`` sends it);
* ``stream``: a stream from the upstream's bytes to the relay's loop, as relay_stream reads
  it (uvloop): the mock's 17 events arrive in one read, the router primes the ChunkStream
  (translation, its first chunk), the relay takes every chunk and its answer text, then waits
  once for the end of the body, which arrives on the next loop iteration, and closes;
  ``stream_held`` the same with a held window's deadline on every wait (the output decision
  on), ``stream_reads`` with a deadline and each event in a read of its own;
* ``read``: the router reading a 600-byte answer that has arrived whole;
* ``url``: the provider URL for one request.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_args = sys.argv[1:]
PART: str | None = None
COUNT = 0
if "--part" in _args:
    i = _args.index("--part")
    PART, COUNT = _args[i + 1], int(_args[_args.index("--count") + 1])
    _args = _args[:i]
ROOT = Path(_args[0] if _args else Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from aiohttp.streams import StreamReader  # noqa: E402
from yarl import URL  # noqa: E402

from adapters import mock  # noqa: E402
from adapters.openai import StreamTranslator  # noqa: E402
from adapters.types import Served, Target  # noqa: E402
from pep import streaming  # noqa: E402
from pep.routing import router  # noqa: E402
from pep.routing.settings import ProviderSettings  # noqa: E402
from pep.routing.stream import ChunkStream  # noqa: E402

N = 20_000
QUESTION = {"model": "mock", "messages": [{"role": "user", "content": "Say hello to the benchmark."}],
            "stream": True, "stream_options": {"include_usage": True}}


def median_us(f: Callable[[], Any]) -> float:
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(N):
            f()
        runs.append((time.process_time() - t0) / N * 1e6)
    return statistics.median(runs)


async def amedian_us(f: Callable[[], Awaitable[Any]]) -> float:
    runs = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(N):
            await f()
        runs.append((time.process_time() - t0) / N * 1e6)
    return statistics.median(runs)


class _Protocol:
    """What a StreamReader asks of its protocol (flow control; nothing to control here)."""

    _reading_paused = False
    connected = True

    def pause_reading(self, **_: Any) -> None:
        pass

    def resume_reading(self, **_: Any) -> None:
        pass


async def parts() -> dict[str, float]:
    data = mock.stream_bytes(QUESTION)
    target = Target("m", ProviderSettings(kind="openai_compatible", base_url="http://x/v1"),
                    "mock", "mock-gpt")

    def translate() -> None:
        tr = StreamTranslator(target)
        tr.feed(data)
        tr.finish()

    loop = asyncio.get_running_loop()
    events = [e + b"\n\n" for e in data.split(b"\n\n") if e]
    served = Served("mock", "openai_compatible", "mock")
    by_read = "read" in inspect.signature(ChunkStream).parameters

    def chunk_stream(sr: StreamReader) -> Any:
        source: Any = sr.readany if by_read else sr.iter_any()
        return ChunkStream(source, lambda: None, StreamTranslator(target), served=served,
                           include_usage=False, prompt_estimate=0, label="bench")

    async def relay_reads(pieces: list[bytes], held: bool) -> None:
        """What relay_stream does with its stream, without writing: every chunk and its text."""
        sr = StreamReader(_Protocol(), 2**16, loop=loop)  # type: ignore[arg-type]
        sr.feed_data(pieces[0])

        def arrive(i: int) -> None:
            if i < len(pieces):
                sr.feed_data(pieces[i])
                loop.call_soon(arrive, i + 1)
            else:
                sr.feed_eof()

        cs = chunk_stream(sr)
        await cs.prime()
        loop.call_soon(arrive, 1)
        deadline = loop.time() + 60 if held else None
        if hasattr(streaming, "_Upstream"):  # the relay reads its stream itself
            up = streaming._Upstream(cs)
            while (await up.next(deadline)) is not streaming._END:
                cs.text  # noqa: B018 - what the relay reads
        else:  # before: the relay's feed task, and the text of each chunk computed again
            f = getattr(streaming, "_Feed")(cs)  # noqa: B009 - absent from this version
            delta_text = getattr(streaming, "delta_text")  # noqa: B009
            while (c := await f.next(deadline)) is not streaming._END:
                delta_text(c)
            await f.close()
        await cs.aclose()

    async def stream() -> None:
        await relay_reads([data], False)

    async def stream_held() -> None:
        await relay_reads([data], True)

    async def stream_reads() -> None:
        await relay_reads(events, True)

    body = b'{"x": "' + b"a" * 590 + b'"}'
    headers = {"Content-Type": "application/json"}
    with_content = "content" in inspect.signature(router._Response).parameters

    async def read() -> None:
        sr = StreamReader(_Protocol(), 2**16, loop=loop)  # type: ignore[arg-type]
        sr.feed_data(body)
        sr.feed_eof()
        extra = (sr,) if with_content else ()
        await router._Response(200, headers, sr.iter_any, lambda: None, *extra).read(1 << 20)

    url = "http://127.0.0.1:8090/v1/chat/completions"
    probe = router.Router({}, {}, None)  # type: ignore[arg-type]
    url_of: Callable[[str], Any] = getattr(probe, "_url", lambda u: URL(u, encoded=True))
    table: dict[str, Callable[[], Any]] = {
        "translate": translate, "stream": stream, "stream_held": stream_held,
        "stream_reads": stream_reads, "read": read, "url": lambda: url_of(url)}
    if PART is not None:
        f = table[PART]
        for _ in range(COUNT):
            r = f()
            if inspect.isawaitable(r):
                await r
        return {}
    return {k: (await amedian_us(f) if inspect.iscoroutinefunction(f) else median_us(f))
            for k, f in table.items()}


def main() -> None:
    try:
        import uvloop

        result = uvloop.run(parts())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        result = asyncio.run(parts())
    if PART is not None:
        return
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{ROOT}: " + ", ".join(f"{k} {v:.2f} us" for k, v in result.items())
          + f" (load {load})")


if __name__ == "__main__":
    main()
