#!/usr/bin/env python3
"""Measure what the gateway adds: CPU per request and latency over calling the provider directly.

    .venv/bin/python bench/overhead.py [--requests 2000] [--concurrency 8] [--repeats 3]

One run, side by side, on loopback (GUIDE.md section 5):
  * an OpenAI-compatible mock provider (``python -m adapters.mock_server``),
  * the dev IdP, and the gateway with identity + embedded policy + SQLite audit + content
    inspection + usage counters all on, routing to that mock over HTTP,
  * the gateway pinned to CPU 0; mock, IdP and this load generator pinned to the other CPUs,
  * warm-up discarded, several repeats, medians reported.

Gateway CPU per request = (utime + stime of the gateway process over the measured phase) /
requests, read from /proc. Added latency = gateway p50/p99 minus direct p50/p99. Streaming:
time to first byte, direct vs gateway. Results print as a table and as JSON (--json).
Never used by tests: timings are reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_DIR = Path(tempfile.mkdtemp(prefix="regogate-bench-logs-"))
BODY = {"model": "mock-gpt", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
# --api responses: the same question through POST /v1/responses (translated to the provider's
# chat completions, which the direct baseline calls).
RESPONSES_BODY = {"model": "mock-gpt", "input": "Say hello to the benchmark."}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the workers of ``serve --workers N``)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        todo += [int(k) for k in kids]
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU of the gateway: the process and its workers (none with --workers 1)."""
    total = 0.0
    for p in descendants(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def shared_stores(args: argparse.Namespace, tag: str) -> dict[str, Any]:
    """--audit postgres / --usage redis: the multi-replica stores (the local services)."""
    out: dict[str, Any] = {}
    if args.audit == "postgres":
        out["audit"] = {"store": args.postgres, "pg_schema": f"bench_{tag}"}
    if args.usage == "redis":
        # A loaded machine can stall Redis past the 0.25 s default: a benchmark wants figures,
        # not 503s (usage_unavailable).
        out["usage"] = {"store": args.redis, "key_prefix": f"regogate-bench:{tag}:",
                        "timeout_s": 5.0}
    return out


async def drop_shared_stores(args: argparse.Namespace, tag: str) -> None:
    if args.audit == "postgres":
        import asyncpg

        conn = await asyncpg.connect(args.postgres)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "bench_{tag}" CASCADE')
        finally:
            await conn.close()
    if args.usage == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(args.redis)
        try:
            keys = [k async for k in client.scan_iter(match=f"regogate-bench:{tag}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def spawn(args: list[str], cpus: set[int], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # Children log to a file: an unread pipe would fill and stall them mid-benchmark.
    log = open(LOG_DIR / f"{Path(args[2]).name}-{len(list(LOG_DIR.iterdir()))}.log", "wb")
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        os.sched_setaffinity(proc.pid, cpus)
    except (AttributeError, OSError):
        pass
    return proc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def gateway_config(work: Path, gw_port: int, idp_port: int, mock: str) -> dict[str, Any]:
    """Everything on: dev-IdP tokens, embedded policy, SQLite audit, the HTTP mock provider
    through the openai_compatible adapter (bench/compare.py uses the same).
    ``REGOGATE_BENCH_CONFIG`` (a JSON object, merged in) changes a setting for an A/B run,
    e.g. ``{"audit": {"commit_window_ms": 0}}``."""
    return _merge(_base_config(work, gw_port, idp_port, mock),
                  json.loads(os.environ.get("REGOGATE_BENCH_CONFIG") or "{}"))


def _base_config(work: Path, gw_port: int, idp_port: int, mock: str) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": gw_port, "data_dir": str(work / "gw")},
        "identity": {"issuers": [{"issuer": f"http://127.0.0.1:{idp_port}",
                                  "audiences": ["regogate"], "required_typ": "at+jwt"}]},
        "policy": {"engine": "embedded", "bundle": str(ROOT / "policies")},
        "audit": {"store": f"sqlite:///{work / 'audit.db'}"},
        "providers": {"mock": {"kind": "openai_compatible", "base_url": mock + "/v1",
                               "api_key": "bench-not-a-secret"}},
        "models": {"mock-gpt": {"provider": "mock", "model": "mock-gpt"}},
    }


async def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not come up; logs in {LOG_DIR}")


async def load(url: str, headers: dict[str, str], body: bytes, n: int, conc: int,
               stream: bool = False) -> list[float]:
    latencies: list[float] = []
    queue = iter(range(n))
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                async with s.post(url, data=body, headers=headers) as r:
                    if stream:
                        await r.content.readany()  # first byte
                        latencies.append(time.perf_counter() - t0)
                        await r.read()
                    else:
                        await r.read()
                        latencies.append(time.perf_counter() - t0)
                    if r.status != 200:
                        raise SystemExit(f"{url} answered {r.status}: {(await r.text())[:300]}")

        await asyncio.gather(*(worker() for _ in range(conc)))
    return latencies


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ncpu = os.cpu_count() or 1
    gw_cpus, other_cpus = {0}, (set(range(1, ncpu)) or {0})
    if args.workers > 1 or args.spread:  # N workers need N cores: nothing is pinned apart
        gw_cpus = other_cpus = set(range(ncpu))
    tag = os.urandom(5).hex()
    try:
        os.sched_setaffinity(0, other_cpus)
    except (AttributeError, OSError):
        pass
    work = Path(tempfile.mkdtemp(prefix="regogate-bench-"))
    mock_port, idp_port, gw_port = free_port(), free_port(), free_port()
    py = sys.executable
    procs = [spawn([py, "-m", "adapters.mock_server", "--port", str(mock_port)], other_cpus),
             spawn([py, "-m", "idp", "serve", "--port", str(idp_port), "--data-dir", str(work)],
                   other_cpus)]
    try:
        mock = f"http://127.0.0.1:{mock_port}"
        await wait_http(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration")
        await wait_http(mock + "/v1/models")
        config = {
            **gateway_config(work, gw_port, idp_port, mock),
            # --cache off: the cache is disabled (the figures before issue 15 compare to this);
            # hit: every measured request repeats the cached one; miss: Cache-Control:
            # no-cache, so each request skips the lookup, calls the provider and fills.
            "cache": {"enabled": args.cache != "off"},
            **shared_stores(args, tag),
        }
        cfg = work / "regogate.yaml"
        cfg.write_text(yaml.safe_dump(config))
        workers = ["--workers", str(args.workers)] if args.workers > 1 else []
        gw = spawn([py, "-m", "pep", "serve", "--config", str(cfg), *workers], gw_cpus,
                   env={"REGOGATE_LOG_LEVEL": "WARNING"})
        procs.append(gw)
        gateway = f"http://127.0.0.1:{gw_port}"
        await wait_http(gateway + "/healthz")
        token = subprocess.check_output(
            [py, "-m", "idp", "token", "alice", "--data-dir", str(work)], cwd=ROOT, text=True
        ).strip()
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        if args.cache == "miss":
            auth["Cache-Control"] = "no-cache"
        direct_h = {"Authorization": "Bearer bench-not-a-secret", "Content-Type": "application/json"}
        direct_plain = json.dumps(BODY).encode()
        direct_streamed = json.dumps({**BODY, "stream": True}).encode()
        gw_body = RESPONSES_BODY if args.api == "responses" else BODY
        plain = json.dumps(gw_body).encode()
        streamed = json.dumps({**gw_body, "stream": True}).encode()
        gw_path = "/v1/responses" if args.api == "responses" else "/v1/chat/completions"
        results: dict[str, list[float]] = {k: [] for k in (
            "cpu_ms", "direct_p50", "direct_p99", "gw_p50", "gw_p99", "ttfb_direct", "ttfb_gw",
            "c1_direct_p50", "c1_direct_p99", "c1_gw_p50", "c1_gw_p99", "rps_gw")}
        for _ in range(args.repeats):
            await load(gateway + gw_path, auth, plain, args.warmup, args.concurrency)
            await load(mock + "/v1/chat/completions", direct_h, direct_plain, args.warmup, args.concurrency)
            direct = await load(mock + "/v1/chat/completions", direct_h, direct_plain, args.requests,
                                args.concurrency)
            cpu0, t0 = tree_cpu_seconds(gw.pid), time.perf_counter()
            via = await load(gateway + gw_path, auth, plain, args.requests,
                             args.concurrency)
            cpu1, t1 = tree_cpu_seconds(gw.pid), time.perf_counter()
            results["cpu_ms"].append((cpu1 - cpu0) / args.requests * 1000)
            results["rps_gw"].append(args.requests / (t1 - t0))
            # Unloaded: one request at a time, so latency is overhead, not queueing.
            n1 = max(100, args.requests // 4)
            d1 = await load(mock + "/v1/chat/completions", direct_h, direct_plain, n1, 1)
            g1 = await load(gateway + gw_path, auth, plain, n1, 1)
            results["c1_direct_p50"].append(pct(d1, 0.5))
            results["c1_direct_p99"].append(pct(d1, 0.99))
            results["c1_gw_p50"].append(pct(g1, 0.5))
            results["c1_gw_p99"].append(pct(g1, 0.99))
            results["direct_p50"].append(pct(direct, 0.5))
            results["direct_p99"].append(pct(direct, 0.99))
            results["gw_p50"].append(pct(via, 0.5))
            results["gw_p99"].append(pct(via, 0.99))
            n_stream = max(50, args.requests // 10)
            results["ttfb_direct"].append(pct(await load(
                mock + "/v1/chat/completions", direct_h, direct_streamed, n_stream, 1, stream=True), 0.5))
            results["ttfb_gw"].append(pct(await load(
                gateway + gw_path, auth, streamed, n_stream, 1, stream=True), 0.5))
        med = {k: round(statistics.median(v), 3) for k, v in results.items()}
        med["added_p50_ms"] = round(med["gw_p50"] - med["direct_p50"], 3)
        med["added_p99_ms"] = round(med["gw_p99"] - med["direct_p99"], 3)
        med["added_ttfb_ms"] = round(med["ttfb_gw"] - med["ttfb_direct"], 3)
        med["c1_added_p50_ms"] = round(med["c1_gw_p50"] - med["c1_direct_p50"], 3)
        med["c1_added_p99_ms"] = round(med["c1_gw_p99"] - med["c1_direct_p99"], 3)
        results_cpu = sorted(results["cpu_ms"])
        med.update(cpu_ms_min=round(results_cpu[0], 3), cpu_ms_max=round(results_cpu[-1], 3),
                   workers=args.workers, audit=args.audit, usage=args.usage,
                   spread=args.workers > 1 or args.spread)
        med.update(cache=args.cache, api=args.api, requests=args.requests, concurrency=args.concurrency, repeats=args.repeats,
                   cpus=ncpu)
        return med
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        await drop_shared_stores(args, tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--api", choices=("chat", "responses"), default="chat",
                        help="gateway endpoint measured (the direct baseline is always chat)")
    parser.add_argument("--cache", choices=("off", "hit", "miss"), default="off",
                        help="response cache: disabled, every request a hit, or a miss + fill")
    parser.add_argument("--workers", type=int, default=1,
                        help="serve --workers N (needs --audit postgres --usage redis above 1)")
    parser.add_argument("--spread", action="store_true",
                        help="no pinning: gateway, mock and load share every CPU (as with"
                        " --workers N; the 1-worker baseline for a workers comparison)")
    parser.add_argument("--audit", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--usage", choices=("memory", "redis"), default="memory")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r, indent=2))
        return
    pinned = (f"{r['workers']} worker(s), nothing pinned, {r['cpus']} CPUs" if r["spread"]
              else f"gateway pinned to CPU 0 of {r['cpus']}")
    print(f"regogate overhead, {r['api']} API ({r['requests']} requests x {r['repeats']} repeats, concurrency "
          f"{r['concurrency']}, medians; {pinned}; audit {r['audit']}, usage {r['usage']})")
    print(f"  gateway CPU per request        {r['cpu_ms']:.3f} ms (min {r['cpu_ms_min']:.3f},"
          f" max {r['cpu_ms_max']:.3f}; {r['rps_gw']:.0f} requests/s)")
    print(f"  unloaded p50 direct / gateway  {r['c1_direct_p50']:.3f} / {r['c1_gw_p50']:.3f} ms "
          f"(added {r['c1_added_p50_ms']:.3f} ms)")
    print(f"  unloaded p99 direct / gateway  {r['c1_direct_p99']:.3f} / {r['c1_gw_p99']:.3f} ms "
          f"(added {r['c1_added_p99_ms']:.3f} ms)")
    print(f"  at concurrency {r['concurrency']}: p50 direct / gateway {r['direct_p50']:.3f} / "
          f"{r['gw_p50']:.3f} ms, p99 {r['direct_p99']:.3f} / {r['gw_p99']:.3f} ms (queueing "
          "on the gateway's single core)")
    print(f"  stream TTFB direct / gateway   {r['ttfb_direct']:.3f} / {r['ttfb_gw']:.3f} ms "
          f"(added {r['added_ttfb_ms']:.3f} ms)")


if __name__ == "__main__":
    main()
