#!/usr/bin/env python3
"""regogate's CPU and latency across concurrency levels, plain and streaming, in one run.

    .venv/bin/python bench/compare.py [--concurrency 1,16,64] [--requests 2000] [--repeats 3]
                                      [--json]

The gateway routes ``mock-gpt`` over HTTP to an OpenAI-compatible mock in its own process
(``python -m adapters.mock_server``) and is pinned to CPU 0; the mock, the dev IdP and this
load generator run on the other CPUs. regogate runs with everything on (dev-IdP tokens
verified, embedded policy with the output decision, content inspection, usage counters,
durable SQLite audit) and reaches the mock through its ``openai_compatible`` adapter.

Per concurrency and mode (plain, streaming): CPU per request (utime + stime of the gateway
process, from /proc, over the measured phase), p50/p99 latency (for streams, time to first
byte), requests per second; min / median / max over the repeats; RSS at the end. Warm-up is
discarded. Timings are printed, never asserted (no test runs this). Running other gateways
beside it in the same run is not built yet (docs/performance.md says why).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead as ov  # noqa: E402 - the shared process, load and percentile helpers

ROOT = ov.ROOT


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Target:
    """One gateway under test: how to start it and how to call it."""

    def __init__(self, name: str, url: str, headers: dict[str, str], proc: Any,
                 extra: list[Any] | None = None) -> None:
        self.name, self.url, self.headers, self.proc = name, url, headers, proc
        self.extra = extra or []  # helper processes (the dev IdP) stopped with it


async def start_regogate(work: Path, mock: str) -> Target:
    idp_port, gw_port = ov.free_port(), ov.free_port()
    other = set(range(1, os.cpu_count() or 1)) or {0}
    idp = ov.spawn([sys.executable, "-m", "idp", "serve", "--port", str(idp_port),
                    "--data-dir", str(work)], other)
    await ov.wait_http(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration")
    config = {
        **ov.gateway_config(work, gw_port, idp_port, mock),
        # Repeated identical requests would be cache hits under the default policy; the
        # comparison is of the uncached path (bench/overhead.py --cache hit measures hits).
        "cache": {"enabled": False},
    }
    cfg = work / "regogate.yaml"
    cfg.write_text(yaml.safe_dump(config))
    gw = ov.spawn([sys.executable, "-m", "pep", "serve", "--config", str(cfg)], {0},
                  env={"REGOGATE_LOG_LEVEL": "WARNING"})
    url = f"http://127.0.0.1:{gw_port}"
    await ov.wait_http(url + "/healthz")
    token = subprocess.check_output([sys.executable, "-m", "idp", "token", "alice",
                                     "--data-dir", str(work)], cwd=ROOT, text=True).strip()
    return Target("regogate", url, {"Authorization": f"Bearer {token}",
                                    "Content-Type": "application/json"}, gw, [idp])


async def measure(t: Target, conc: int, n: int, warmup: int, stream: bool) -> dict[str, float]:
    body = json.dumps({**ov.BODY, "stream": stream}).encode()
    url = t.url + "/v1/chat/completions"
    await ov.load(url, t.headers, body, warmup, conc, stream=stream)
    cpu0, t0 = ov.cpu_seconds(t.proc.pid), time.perf_counter()
    lat = await ov.load(url, t.headers, body, n, conc, stream=stream)
    cpu1, t1 = ov.cpu_seconds(t.proc.pid), time.perf_counter()
    return {"cpu_ms": (cpu1 - cpu0) / n * 1000, "p50_ms": ov.pct(lat, 0.5),
            "p99_ms": ov.pct(lat, 0.99), "rps": n / (t1 - t0)}


def summarise(runs: list[dict[str, float]]) -> dict[str, list[float]]:
    return {k: [round(min(r[k] for r in runs), 3), round(statistics.median(r[k] for r in runs), 3),
                round(max(r[k] for r in runs), 3)] for k in runs[0]}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    other = set(range(1, os.cpu_count() or 1)) or {0}
    try:
        os.sched_setaffinity(0, other)
    except (AttributeError, OSError):
        pass
    work = Path(tempfile.mkdtemp(prefix="regogate-compare-"))
    mock_port = ov.free_port()
    mock_proc = ov.spawn([sys.executable, "-m", "adapters.mock_server", "--port",
                          str(mock_port)], other)
    mock = f"http://127.0.0.1:{mock_port}"
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "commit": _commit(), "cpus": os.cpu_count(),
                               "requests": args.requests, "repeats": args.repeats,
                               "gateways": {}}
    try:
        await ov.wait_http(mock + "/v1/models")
        for name in ("regogate",):
            target = await start_regogate(work, mock)
            try:
                per: dict[str, Any] = {}
                for stream in (False, True):
                    for conc in args.concurrency:
                        runs = [await measure(target, conc, args.requests, args.warmup, stream)
                                for _ in range(args.repeats)]
                        per[f"{'stream' if stream else 'plain'}_c{conc}"] = summarise(runs)
                per["rss_mb"] = round(rss_mb(target.proc.pid), 1)
                results["gateways"][name] = per
            finally:
                for p in [target.proc, *target.extra]:
                    p.terminate()
                    try:
                        p.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        p.kill()
    finally:
        mock_proc.terminate()
        mock_proc.wait(timeout=10)
    return results


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"{r['date']} commit {r['commit']}, {r['cpus']} CPUs, {r['requests']} requests x "
          f"{r['repeats']} repeats; min / median / max")
    for name, per in r["gateways"].items():
        print(f"\n{name} (RSS {per['rss_mb']} MB)")
        print(f"  {'mode':<12} {'CPU/request ms':<24} {'p50 ms':<24} {'p99 ms':<24} req/s")
        for mode, m in per.items():
            if mode == "rss_mb":
                continue
            fmt = lambda v: " / ".join(f"{x:.3f}" for x in v)  # noqa: E731
            print(f"  {mode:<12} {fmt(m['cpu_ms']):<24} {fmt(m['p50_ms']):<24} "
                  f"{fmt(m['p99_ms']):<24} {m['rps'][1]:.0f}")


if __name__ == "__main__":
    main()
