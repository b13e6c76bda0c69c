#!/usr/bin/env python3
"""Where regogate's CPU per request goes, by stage: py-spy samples bucketed by module.

    .venv/bin/python bench/stages.py [--concurrency 16] [--seconds 20] [--stream]

Starts the same gateway as ``bench/compare.py`` (everything on, mock provider over HTTP,
gateway pinned to CPU 0), measures its CPU per request under load without the profiler, then
runs the same load again while ``py-spy record`` (installed from PyPI into the cache folder
of ``bench/peers.py`` unless it is on PATH) samples every active thread of the gateway. Each
sample is charged to the stage of its innermost frame that belongs to one (``STAGES``, first
match from the leaf; aiohttp's shared HTTP code goes to the upstream client when the stack
came through the router, else to the server), and the shares are scaled by the CPU per
request to microseconds. Native code (regorus, orjson, SQLite) is charged to the Python
frame that called it. A sampling profile, not a stopwatch: shares move by a few points
between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402
import overhead as ov  # noqa: E402
import peers  # noqa: E402

PY_SPY_VERSION = "0.4.3"

# (substring of a frame's file, stage): the first match from the leaf names the stage.
STAGES: list[tuple[str, str]] = [
    ("pep/policy/input.py", "policy input"),
    ("pep/policy/engine.py", "decision parsing"),
    ("pep/policy/contract.py", "decision parsing"),
    ("pydantic", "decision parsing"),
    ("pep/policy/", "regorus evaluation"),
    ("pep/audit/sqlite_store.py", "audit writer (SQLite)"),
    ("sqlite3", "audit writer (SQLite)"),
    ("pep/audit/", "audit events + hand-off"),
    ("pep/auditing.py", "audit events + hand-off"),
    ("pep/content/", "content inspection"),
    ("pep/usage/", "usage"),
    ("pep/auth/", "token (cache hit)"),
    ("pep/routing/", "upstream client, router, adapter"),
    ("adapters/", "upstream client, router, adapter"),
    ("aiohttp/client", "upstream client, router, adapter"),
    ("aiohttp/connector", "upstream client, router, adapter"),
    ("pep/streaming.py", "stream relay + output check"),
    ("pep/output.py", "stream relay + output check"),
    ("pep/metrics.py", "metrics, logs, tracing"),
    ("prometheus_client", "metrics, logs, tracing"),
    ("pep/logs.py", "metrics, logs, tracing"),
    ("pep/tracing.py", "metrics, logs, tracing"),
    ("logging/", "metrics, logs, tracing"),
    ("pep/validation.py", "validation + normalisation"),
    ("pep/request.py", "validation + normalisation"),
    ("pep/inbound/", "validation + normalisation"),
    ("pep/http/body.py", "validation + normalisation"),
    ("aiohttp/", "aiohttp server"),
    ("multidict", "aiohttp server"),
    ("yarl", "aiohttp server"),
    ("pep/", "pipeline glue (pep/*)"),
    ("asyncio/", "event loop"),
    ("uvloop", "event loop"),
    ("threading.py", "event loop"),
    ("concurrent/", "event loop"),
]
_UPSTREAM = ("pep/routing/", "adapters/", "aiohttp/client")
# Leaf frames of a thread that is waiting, not working (py-spy's idle detection does not see
# these as idle): queue and condition waits, the executor's idle get, the event loop's poll.
_WAITS = ("(threading.py", "(queue.py", "(concurrent/futures/thread.py", "Runner.run (",
          "run_forever (", "_run_once (", "select (")


def stage_of(frames: list[str]) -> str:
    """``frames`` root first, as py-spy's raw format writes them."""
    for frame in reversed(frames):
        for needle, stage in STAGES:
            if needle in frame:
                if stage == "aiohttp server" and any(u in f for f in frames for u in _UPSTREAM):
                    return "upstream client, router, adapter"
                return stage
    return "other"


def is_wait(frames: list[str]) -> bool:
    leaf = frames[-1]
    if any(w in leaf for w in _WAITS):
        return True
    # The audit/witness threads' own queue.get lines (the frame below is queue.py when
    # py-spy resolves it; when it does not, the line itself says so).
    return leaf.endswith(("witness.py:115)", "sqlite_store.py:211)"))


def thread_cpu(pid: int) -> tuple[float, float]:
    """(event-loop thread, all other threads) CPU seconds of ``pid``, from /proc."""
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            f = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        t = (int(f[11]) + int(f[12])) / ov.CLK_TCK
        if int(task.name) == pid:
            main += t
        else:
            other += t
    return main, other


def py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found:
        return found
    folder = peers.cache_dir() / f"py-spy-{PY_SPY_VERSION}"
    exe = folder / "bin" / "py-spy"
    if not exe.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(folder)])
        subprocess.check_call([str(folder / "bin" / "python"), "-m", "pip", "install", "-q",
                               "--disable-pip-version-check", f"py-spy=={PY_SPY_VERSION}"])
    return str(exe)


async def run(args: argparse.Namespace) -> dict[str, object]:
    spy = py_spy()
    other = set(range(1, os.cpu_count() or 1)) or {0}
    try:
        os.sched_setaffinity(0, other)
    except (AttributeError, OSError):
        pass
    work = Path(tempfile.mkdtemp(prefix="regogate-stages-"))
    mock_port = ov.free_port()
    mock_proc = ov.spawn([sys.executable, "-m", "adapters.mock_server", "--port",
                          str(mock_port)], other)
    mock = f"http://127.0.0.1:{mock_port}"
    await ov.wait_http(mock + "/v1/models")
    target = await compare.start_regogate(work, mock)
    try:
        body = json.dumps({**ov.BODY, "stream": args.stream}).encode()
        url = target.url + "/v1/chat/completions"
        splits: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            await ov.load(url, target.headers, body, args.warmup, args.concurrency,
                          stream=args.stream)
            m0, o0 = thread_cpu(target.proc.pid)
            await ov.load(url, target.headers, body, args.requests, args.concurrency,
                          stream=args.stream)
            m1, o1 = thread_cpu(target.proc.pid)
            splits.append(((m1 - m0) / args.requests * 1000, (o1 - o0) / args.requests * 1000))
        splits.sort(key=sum)
        main_ms, other_ms = splits[len(splits) // 2]
        cpu_ms = main_ms + other_ms
        out = work / "spy.txt"
        spy_proc = subprocess.Popen([spy, "record", "--threads", "--pid", str(target.proc.pid),
                                     "--rate",
                                     str(args.rate), "--format", "raw", "--output", str(out),
                                     "--duration", str(args.seconds)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and spy_proc.poll() is None:
            await ov.load(url, target.headers, body, 200, args.concurrency, stream=args.stream)
        spy_proc.wait(timeout=args.seconds + 60)
        if args.raw_out:
            shutil.copy(out, args.raw_out)
        # Per thread: samples of work (waits dropped), charged to stages; each thread group's
        # samples are scaled to the CPU /proc measured for it.
        main_c: Counter[str] = Counter()
        other_c: Counter[str] = Counter()
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            frames = stack.split(";")
            if len(frames) < 2 or is_wait(frames):
                continue
            bucket = main_c if any("(pep/cli.py" in f for f in frames) else other_c
            bucket[stage_of(frames[1:])] += int(n)
    finally:
        target.stop()
        mock_proc.terminate()
        mock_proc.wait(timeout=10)
    us: Counter[str] = Counter()
    for counts, ms in ((main_c, main_ms), (other_c, other_ms)):
        total = sum(counts.values())
        for k, v in counts.items():
            us[k] += v / total * ms * 1000 if total else 0.0
    if not other_c and other_ms:
        us["other threads (not sampled)"] += other_ms * 1000
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": compare._commit(),
            "concurrency": args.concurrency, "stream": args.stream, "cpu_ms": cpu_ms,
            "main_ms": main_ms, "threads_ms": other_ms,
            "samples": sum(main_c.values()) + sum(other_c.values()),
            "stages": {k: round(v, 1) for k, v in us.most_common()},
            "shares": {k: round(v / (cpu_ms * 10), 1) for k, v in us.most_common()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--raw-out", help="keep py-spy's raw stacks in this file")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['date']} commit {r['commit']}: {'stream' if r['stream'] else 'plain'}, "
          f"concurrency {r['concurrency']}, gateway CPU {r['cpu_ms']:.3f} ms per request "
          f"(median of the unprofiled repeats: event-loop thread {r['main_ms']:.3f}, other "
          f"threads {r['threads_ms']:.3f}); {r['samples']} py-spy samples of work")
    print(f"  {'stage':<36} {'µs / request':>12} {'share':>7}")
    stages, shares = r["stages"], r["shares"]
    assert isinstance(stages, dict) and isinstance(shares, dict)
    for k, v in stages.items():
        print(f"  {k:<36} {v:>12.1f} {shares[k]:>6.1f}%")


if __name__ == "__main__":
    main()
