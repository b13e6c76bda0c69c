#!/usr/bin/env python3
"""Gateway memory: RSS over many requests and with many streams open at once.

    .venv/bin/python bench/memory.py [--requests 100000] [--streams 1000] [--workers 1]

Starts on loopback an OpenAI-compatible provider (this script with ``--provider PORT``:
plain answers at once; a stream sends its role chunk, then one word every
``--stream-gap-s`` seconds, ``--stream-words`` words), the dev IdP and ``regogate serve``
with everything on (token verification, embedded policy on policies/, content inspection,
usage counters, durable SQLite audit; ``--audit postgres --usage redis`` for the
multi-replica stores). Each request asks a different question (a counter in the text), so
nothing is answered from a cache and any per-request state that is kept would show.

Prints the gateway's RSS (VmRSS from /proc, summed over its worker processes) after start-up
and warm-up, at checkpoints over ``--requests`` plain requests (``--concurrency`` at a
time), then the peak while ``--streams`` streams are open at once, and after they end.
Never used by tests: figures are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import (  # noqa: E402  (bench scripts run from a checkout, not installed)
    ROOT, descendants, drop_shared_stores, free_port, gateway_config, shared_stores, spawn,
    wait_http)


def rss_mb(pid: int) -> float:
    total = 0
    for p in descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += int(status.split("VmRSS:")[1].split()[0])
    return round(total / 1024, 1)


# -- the provider -------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    doc = {"id": "chatcmpl-mem", "object": "chat.completion.chunk", "created": 0,
           "model": "mock-gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def provider_app(gap_s: float, words: int) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = "Hello from the memory benchmark."
        if not body.get("stream"):
            return web.json_response({
                "id": "chatcmpl-mem", "object": "chat.completion", "created": 0,
                "model": "mock-gpt", "choices": [{"index": 0, "finish_reason": "stop",
                                                  "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(_chunk({"role": "assistant", "content": ""}))
        for i in range(words):
            await asyncio.sleep(gap_s)
            await resp.write(_chunk({"content": f"word{i} "}))
        await resp.write(_chunk({}, "stop"))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "mock-gpt", "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    return app


# -- the load ---------------------------------------------------------------------------


async def plain_load(url: str, headers: dict[str, str], start: int, n: int, conc: int) -> None:
    queue = iter(range(start, start + n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:

        async def worker() -> None:
            for i in queue:
                body = {"model": "mock-gpt",
                        "messages": [{"role": "user", "content": f"Question number {i}, please."}]}
                async with s.post(url, json=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"{url} answered {r.status}: {(await r.text())[:300]}")

        await asyncio.gather(*(worker() for _ in range(conc)))


async def streams(url: str, headers: dict[str, str], n: int, gw_pid: int) -> tuple[float, int]:
    """Open ``n`` streams at once; sample RSS from when all are open until all have ended.
    Returns (peak, completed)."""
    opened = asyncio.Event()
    count = 0
    done = 0
    connector = aiohttp.TCPConnector(limit=n + 10)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:

        async def one(i: int) -> None:
            nonlocal count, done
            body = {"model": "mock-gpt", "stream": True,
                    "messages": [{"role": "user", "content": f"Stream number {i}, please."}]}
            async with s.post(url, json=body, headers=headers) as r:
                if r.status != 200:
                    raise SystemExit(f"stream answered {r.status}: {(await r.text())[:300]}")
                await r.content.readany()
                count += 1
                if count == n:
                    opened.set()
                async for _ in r.content:
                    pass
                done += 1

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.wait_for(opened.wait(), 300)
        # Sampled from the moment all are open until the last one ends: on a slow machine
        # the first streams can end before the last has opened, and a loop that stopped at
        # the first end would then never sample (a peak of 0.0 MB).
        peak = rss_mb(gw_pid)
        while done < n:
            peak = max(peak, rss_mb(gw_pid))
            await asyncio.sleep(0.2)
        await asyncio.gather(*tasks)
    return peak, done


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="regogate-mem-"))
    prov_port, idp_port, gw_port = free_port(), free_port(), free_port()
    py = sys.executable
    cpus = set(range(os.cpu_count() or 1))
    tag = os.urandom(5).hex()
    procs = [spawn([py, str(Path(__file__).resolve()), "--provider", str(prov_port),
                    "--stream-gap-s", str(args.stream_gap_s), "--stream-words",
                    str(args.stream_words)], cpus),
             spawn([py, "-m", "idp", "serve", "--port", str(idp_port), "--data-dir", str(work)],
                   cpus)]
    out: dict[str, Any] = {"requests": args.requests, "streams": args.streams,
                           "workers": args.workers, "audit": args.audit, "usage": args.usage}
    try:
        prov = f"http://127.0.0.1:{prov_port}"
        await wait_http(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration")
        await wait_http(prov + "/v1/models")
        config = gateway_config(work, gw_port, idp_port, prov)
        config["server"]["limits"] = {"max_concurrent_streams": args.streams + 64,
                                      "max_connections": args.streams + 256}
        config["cache"] = {"enabled": args.cache}
        config.update(shared_stores(args, tag))
        cfg = work / "regogate.yaml"
        cfg.write_text(yaml.safe_dump(config))
        workers = ["--workers", str(args.workers)] if args.workers > 1 else []
        gw = spawn([py, "-m", "pep", "serve", "--config", str(cfg), *workers], cpus,
                   env={"REGOGATE_LOG_LEVEL": "WARNING"})
        procs.append(gw)
        gateway = f"http://127.0.0.1:{gw_port}"
        await wait_http(gateway + "/healthz")
        out["rss_started_mb"] = rss_mb(gw.pid)
        import subprocess

        token = subprocess.check_output(
            [py, "-m", "idp", "token", "alice", "--data-dir", str(work)], cwd=ROOT, text=True
        ).strip()
        headers = {"Authorization": f"Bearer {token}"}
        url = gateway + "/v1/chat/completions"
        await plain_load(url, headers, 0, args.warmup, args.concurrency)
        out["rss_after_warmup_mb"] = rss_mb(gw.pid)
        marks: dict[str, float] = {}
        done, t0 = 0, time.monotonic()
        for mark in sorted({args.requests // 10, args.requests // 4, args.requests // 2,
                            args.requests}):
            await plain_load(url, headers, args.warmup + done, mark - done, args.concurrency)
            done = mark
            marks[str(mark)] = rss_mb(gw.pid)
            print(f"  after {mark:>7} requests: RSS {marks[str(mark)]} MB"
                  f" ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
        out["rss_after_requests_mb"] = marks
        waves: list[dict[str, float]] = []
        for _ in range(args.stream_waves if args.streams else 0):
            # Several waves: memory kept after one (the allocator's high-water mark) must be
            # reused by the next, not added to.
            peak, completed = await streams(url, headers, args.streams, gw.pid)
            await asyncio.sleep(2)
            waves.append({"peak_mb": peak, "completed": completed, "after_mb": rss_mb(gw.pid)})
            print(f"  {args.streams} streams: peak {peak} MB, after {waves[-1]['after_mb']} MB",
                  file=sys.stderr, flush=True)
        out["stream_waves"] = waves
        return out
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except Exception:  # noqa: BLE001 - best effort cleanup of our own children
                p.kill()
        await drop_shared_stores(args, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--stream-waves", type=int, default=2)
    parser.add_argument("--stream-gap-s", type=float, default=0.5)
    parser.add_argument("--stream-words", type=int, default=20)
    parser.add_argument("--cache", action="store_true",
                        help="leave the response cache on (every question differs: all misses)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--audit", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--usage", choices=("memory", "redis"), default="memory")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--provider", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.provider:
        web.run_app(provider_app(args.stream_gap_s, args.stream_words), host="127.0.0.1",
                    port=args.provider, print=None)
        return
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"regogate memory ({r['workers']} worker(s), audit {r['audit']}, usage {r['usage']};"
          " RSS summed over the gateway's processes)")
    print(f"  after start-up                 {r['rss_started_mb']} MB")
    print(f"  after warm-up                  {r['rss_after_warmup_mb']} MB")
    for n, mb in r["rss_after_requests_mb"].items():
        print(f"  after {int(n):>7} requests       {mb} MB")
    for i, wave in enumerate(r["stream_waves"], 1):
        print(f"  wave {i}: {r['streams']} streams open at once {wave['peak_mb']} MB (peak;"
              f" {wave['completed']} completed), after they ended {wave['after_mb']} MB")


if __name__ == "__main__":
    main()
