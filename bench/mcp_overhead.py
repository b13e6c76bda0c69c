#!/usr/bin/env python3
"""Measure what the MCP gateway adds to a tool call: gateway CPU per ``tools/call`` and the
latency over calling the MCP server directly.

    .venv/bin/python bench/mcp_overhead.py [--calls 500] [--concurrency 4] [--repeats 3]

One run, side by side, on loopback (GUIDE.md section 5), like bench/overhead.py:
  * the demo MCP server (pep/mcp/demo.py, the ``mcp`` SDK under uvicorn) in its own process,
  * the dev IdP, and the gateway (identity + embedded policy + SQLite audit + content
    inspection of arguments and results + tool-call counters) with ``mcp.servers.demo``
    pointing at that process over HTTP,
  * the gateway pinned to CPU 0; the MCP server, the IdP and this load generator elsewhere,
  * warm-up discarded, several repeats, medians reported.

Each client opens one MCP session (initialize + initialized) and then calls ``echo``
repeatedly (raw JSON-RPC over streamable HTTP). Gateway CPU per call = (utime + stime of the
gateway process over the measured phase) / calls. Never used by tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import ROOT, cpu_seconds, free_port, gateway_config, pct, spawn, wait_http  # noqa: E402

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "bench", "version": "1"}}}
SERVE_DEMO = ("import sys, uvicorn; from pep.mcp.demo import build_demo_app; "
              "uvicorn.run(build_demo_app(), host='127.0.0.1', port=int(sys.argv[1]), "
              "log_level='warning', access_log=False)")


async def session(http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> dict[str, str]:
    async with http.post(url, data=orjson.dumps(INIT), headers=headers) as r:
        await r.read()
        assert r.status == 200, r.status
        h = {**headers, "Mcp-Session-Id": r.headers["Mcp-Session-Id"],
             "MCP-Protocol-Version": "2025-11-25"}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    async with http.post(url, data=orjson.dumps(note), headers=h) as r:
        await r.read()
    return h


async def load(url: str, headers: dict[str, str], calls: int, conc: int) -> list[float]:
    latencies: list[float] = []
    queue = iter(range(calls))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as http:
        sessions = [await session(http, url, headers) for _ in range(conc)]

        async def worker(h: dict[str, str]) -> None:
            for i in queue:
                body = orjson.dumps({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                                     "params": {"name": "echo",
                                                "arguments": {"text": f"call {i}"}}})
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=h) as r:
                    raw = await r.read()
                    assert r.status == 200 and b'"result"' in raw, (r.status, raw[:200])
                latencies.append(time.perf_counter() - t0)  # seconds: pct() reports ms

        await asyncio.gather(*(worker(h) for h in sessions))
    return latencies


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import os

    ncpu = os.cpu_count() or 1
    gw_cpus, other_cpus = {0}, (set(range(1, ncpu)) or {0})
    try:
        os.sched_setaffinity(0, other_cpus)
    except (AttributeError, OSError):
        pass
    work = Path(tempfile.mkdtemp(prefix="regogate-mcp-bench-"))
    mcp_port, idp_port, gw_port = free_port(), free_port(), free_port()
    py = sys.executable
    procs = [spawn([py, "-c", SERVE_DEMO, str(mcp_port)], other_cpus),
             spawn([py, "-m", "idp", "serve", "--port", str(idp_port), "--data-dir", str(work)],
                   other_cpus)]
    try:
        direct_url = f"http://127.0.0.1:{mcp_port}/mcp"
        await wait_http(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration")
        await wait_http(direct_url)
        config = {**gateway_config(work, gw_port, idp_port, "http://127.0.0.1:9"),
                  "mcp": {"servers": {"demo": {"url": direct_url}}}}
        cfg = work / "regogate.yaml"
        cfg.write_text(yaml.safe_dump(config))
        gw = spawn([py, "-m", "pep", "serve", "--config", str(cfg)], gw_cpus,
                   env={"REGOGATE_LOG_LEVEL": "WARNING"})
        procs.append(gw)
        gateway_url = f"http://127.0.0.1:{gw_port}/mcp/demo"
        await wait_http(f"http://127.0.0.1:{gw_port}/healthz")
        token = subprocess.check_output(
            [py, "-m", "idp", "token", "alice", "--data-dir", str(work)], cwd=ROOT, text=True
        ).strip()
        base = {"Content-Type": "application/json",
                "Accept": "application/json, text/event-stream"}
        via_h = {**base, "Authorization": f"Bearer {token}"}
        results: dict[str, list[float]] = {k: [] for k in (
            "cpu_ms", "direct_p50", "direct_p99", "gw_p50", "gw_p99", "c1_direct_p50",
            "c1_gw_p50")}
        for _ in range(args.repeats):
            await load(gateway_url, via_h, args.warmup, args.concurrency)
            await load(direct_url, base, args.warmup, args.concurrency)
            direct = await load(direct_url, base, args.calls, args.concurrency)
            cpu0 = cpu_seconds(gw.pid)
            via = await load(gateway_url, via_h, args.calls, args.concurrency)
            cpu1 = cpu_seconds(gw.pid)
            # The sessions' own initialize + initialized count too: 2 per client.
            results["cpu_ms"].append((cpu1 - cpu0) / (args.calls + 2 * args.concurrency) * 1000)
            results["direct_p50"].append(pct(direct, 0.5))
            results["direct_p99"].append(pct(direct, 0.99))
            results["gw_p50"].append(pct(via, 0.5))
            results["gw_p99"].append(pct(via, 0.99))
            n1 = max(50, args.calls // 4)
            results["c1_direct_p50"].append(pct(await load(direct_url, base, n1, 1), 0.5))
            results["c1_gw_p50"].append(pct(await load(gateway_url, via_h, n1, 1), 0.5))
        med = {k: round(statistics.median(v), 3) for k, v in results.items()}
        med["added_p50_ms"] = round(med["gw_p50"] - med["direct_p50"], 3)
        med["c1_added_p50_ms"] = round(med["c1_gw_p50"] - med["c1_direct_p50"], 3)
        med.update(calls=args.calls, concurrency=args.concurrency, repeats=args.repeats,
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
        return
    for k, v in result.items():
        print(f"{k:>18}  {v}")


if __name__ == "__main__":
    main()
