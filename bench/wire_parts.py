#!/usr/bin/env python3
"""CPU of the HTTP path's parts, in process (``time.process_time``), for A/B runs.

    .venv/bin/python bench/wire_parts.py [ROOT]

ROOT is the checkout whose code is measured (default: this one), so a side of an A/B run
can be another worktree: ``bench/wire_parts.py /path/to/main``. Each figure is the median
of 5 runs of a loop; run A and B alternately, several times, and compare medians (on a
shared machine the absolute figures are inflated). Parts:

* ``translate``: the OpenAI stream translator over the mock provider's whole stream of the
  benchmark question (17 SSE events in one read, as ``adapters.mock_server`` sends it);
* ``feed``: the stream relay's upstream feed over 17 chunks, from start to close (uvloop);
* ``read``: the router reading a 600-byte answer that has arrived whole;
* ``url``: the provider URL for one request.
"""

from __future__ import annotations

import asyncio
import inspect
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from aiohttp.streams import StreamReader  # noqa: E402
from yarl import URL  # noqa: E402

from adapters import mock  # noqa: E402
from adapters.openai import StreamTranslator  # noqa: E402
from adapters.types import Target  # noqa: E402
from pep.routing import router  # noqa: E402
from pep.routing.settings import ProviderSettings  # noqa: E402
from pep.streaming import _END, _Feed  # noqa: E402

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

    async def chunks() -> AsyncIterator[int]:
        for i in range(17):
            yield i

    async def feed() -> None:
        f = _Feed(chunks())
        while (await f.next(None)) is not _END:
            pass
        await f.close()

    loop = asyncio.get_running_loop()
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
    return {"translate": median_us(translate), "feed": await amedian_us(feed),
            "read": await amedian_us(read), "url": median_us(lambda: url_of(url))}


def main() -> None:
    try:
        import uvloop

        result = uvloop.run(parts())
    except ImportError:  # pragma: no cover - uvloop is a dependency
        result = asyncio.run(parts())
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"{ROOT}: " + ", ".join(f"{k} {v:.2f} us" for k, v in result.items())
          + f" (load {load})")


if __name__ == "__main__":
    main()
