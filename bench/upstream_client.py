#!/usr/bin/env python3
"""CPU per provider call of the router alone, against the real mock provider over HTTP.

    .venv/bin/python bench/upstream_client.py [--calls 2000] [--concurrency 16] [--stream]
        [--repeats 3] [--warmup 200] [--mock http://127.0.0.1:PORT] [--root PATH]

Starts ``python -m adapters.mock_server`` on 127.0.0.1 in its own process (or uses
``--mock``), builds the ``Router`` and the provider ``ClientSession`` exactly as the gateway
does (``pep.routing.session.provider_session``, the ``openai_compatible`` deployment of
bench/overhead.py), and drives ``Router.chat`` for the benchmark question from
``--concurrency`` tasks on uvloop: the adapter builds the request, the session sends it, the
answer is read and translated back (``--stream``: the ``ChunkStream`` is read to its end).
Prints this process's CPU per call (``time.process_time``; the mock's CPU is not counted)
for each repeat, then min / median.

For instruction counts (deterministic on a loaded machine) run it under callgrind twice and
take the difference, e.g. with a mock already listening::

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/upstream_client.py --mock URL --repeats 1 --calls 400
    ... the same with --calls 0 ...
    # (Ir(400) - Ir(0)) / 400 = instructions per call

``--root`` measures another checkout's code (an A/B run against main). Never used by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

QUESTION = "Say hello to the benchmark."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_mock(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "adapters.mock_server", "--port", str(port)],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the mock provider did not come up")


async def _run(args: argparse.Namespace, mock: str) -> list[float]:
    from pep.routing.router import Router
    from pep.routing.settings import ModelSettings, ProviderSettings

    try:
        from pep.routing.session import provider_session
        session = provider_session()
    except ImportError:  # a checkout from before provider_session: the same session by hand
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30),
            auto_decompress=True)
    providers = {"mock": ProviderSettings(kind="openai_compatible", base_url=mock + "/v1",
                                          api_key="bench-not-a-secret")}
    models = {"mock-gpt": ModelSettings(provider="mock", model="mock-gpt")}
    router = Router(providers, models, session)
    body: dict[str, Any] = {"model": "mock-gpt",
                            "messages": [{"role": "user", "content": QUESTION}]}
    if args.stream:
        body["stream"] = True

    async def call() -> None:
        result: Any = await router.chat(dict(body), "mock-gpt", request_id="bench")
        if args.stream:
            try:
                async for _ in result:
                    pass
            finally:
                await result.aclose()

    async def drive(n: int) -> None:
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                await call()

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))

    per_call: list[float] = []
    try:
        await drive(args.warmup)
        for _ in range(args.repeats):
            t0 = time.process_time()
            await drive(args.calls)
            if args.calls:
                per_call.append((time.process_time() - t0) / args.calls * 1e6)
    finally:
        await session.close()
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--mock", help="a mock provider already listening (its base URL)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    root = args.root.resolve()
    sys.path.insert(0, str(root))
    proc = None
    mock = args.mock
    if mock is None:
        proc, mock = _start_mock(root)
    try:
        import uvloop

        per_call = uvloop.run(_run(args, mock))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    what = "stream" if args.stream else "plain"
    for v in per_call:
        print(f"{what}: {v:.1f} us CPU per call")
    if per_call:
        print(f"{what}, c = {args.concurrency}, {args.calls} calls x {len(per_call)}: "
              f"min {min(per_call):.1f}, median {statistics.median(per_call):.1f} us CPU "
              f"per call (root {root}, pid {os.getpid()})")


if __name__ == "__main__":
    main()
