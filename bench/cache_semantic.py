#!/usr/bin/env python3
"""Semantic cache cost (docs/performance.md, "Cache"): gateway CPU and latency of an exact
hit, a semantic hit (embedding + index search + entry), a semantic miss (embedding + search +
provider + fill) and a plain miss (provider + fill), plus the index search alone and the
memory per vector.

    .venv/bin/python bench/cache_semantic.py [--requests 200] [--repeats 2]

Same set-up as bench/overhead.py (mock provider over HTTP, dev IdP, embedded policy, SQLite
audit, gateway pinned to CPU 0), with the default policy library's cache in ``semantic`` mode
(data.gateway.cache.mode) and the local embedder (all-MiniLM-L6-v2, one thread; needs the
``[local-embeddings]`` extra). One request at a time, so latency is the gateway's work, not
queueing. Gateway CPU per request = utime + stime of the gateway process (embedding thread
included) over the phase / requests. Reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.overhead import (  # noqa: E402
    ROOT, cpu_seconds, free_port, gateway_config, pct, spawn, wait_http)

WORDS = ("river mountain invoice tax lizard python violin harvest satellite glacier copper "
         "tariff novel pepper engine orbit wheat harbour dentist opera marble algebra comet "
         "saddle fungus ledger tunnel parrot quartz ballot yoghurt cathedral turbine walrus "
         "pension sonnet magnet bakery volcano sheriff biscuit nebula canoe mortgage").split()


async def phase(url: str, headers: dict[str, str], bodies: list[bytes], pid: int
                ) -> tuple[float, float]:
    """(gateway CPU ms per request, p50 latency ms), one request at a time."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as s:
        cpu0 = cpu_seconds(pid)
        for body in bodies:
            t0 = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise SystemExit(f"{url} answered {r.status}: {(await r.text())[:300]}")
            latencies.append(time.perf_counter() - t0)
        cpu1 = cpu_seconds(pid)
    return (cpu1 - cpu0) / len(bodies) * 1000, pct(latencies, 0.5)


def chat(text: str) -> bytes:
    return json.dumps({"model": "mock-gpt", "temperature": 0,
                       "messages": [{"role": "user", "content": text}]}).encode()


def index_figures() -> dict[str, Any]:
    from pep.cache.semantic import SemanticIndex, normalised
    from pep.cache.stores import EntryMeta

    rng = np.random.default_rng(1)
    meta = EntryMeta("alice", "https://idp", "research", "mock-gpt", "user")
    out: dict[str, Any] = {}
    for size in (1, 100, 1000, 5000):
        ix = SemanticIndex(max_per_partition=10_000, max_partitions=10)
        for n in range(size):
            v = normalised(rng.standard_normal(384))
            assert v is not None
            ix.add("p", v, f"k{n}", time.time() + 600, meta)
        q = normalised(rng.standard_normal(384))
        assert q is not None
        ix.best("p", q, 0.0, time.time())  # builds the scan matrix once
        runs = 2000
        t = timeit.timeit(lambda: ix.best("p", q, 0.0, time.time()), number=runs)
        out[f"search_us_{size}_vectors"] = round(t / runs * 1e6, 1)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    ix = SemanticIndex(max_per_partition=100, max_partitions=100_000)
    for n in range(5000):
        v = normalised(rng.standard_normal(384))
        assert v is not None
        ix.add(f"partition-{n % 2500}", v, f"{n:064x}", time.time() + 600, meta)
    after = tracemalloc.take_snapshot()
    heap = sum(s.size_diff for s in after.compare_to(before, "filename"))
    tracemalloc.stop()
    out["heap_bytes_per_vector_384d"] = round(heap / 5000)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="regogate-bench-semantic-"))
    bundle = work / "policies"
    shutil.copytree(ROOT / "policies", bundle)
    data = yaml.safe_load((bundle / "data.yaml").read_text())
    data["gateway"]["cache"]["mode"] = "semantic"
    (bundle / "data.yaml").write_text(yaml.safe_dump(data))
    mock_port, idp_port, gw_port = free_port(), free_port(), free_port()
    py = sys.executable
    procs = [spawn([py, "-m", "adapters.mock_server", "--port", str(mock_port)], {1}),
             spawn([py, "-m", "idp", "serve", "--port", str(idp_port), "--data-dir", str(work)],
                   {1})]
    try:
        mock = f"http://127.0.0.1:{mock_port}"
        await wait_http(f"http://127.0.0.1:{idp_port}/.well-known/openid-configuration")
        await wait_http(mock + "/v1/models")
        config = gateway_config(work, gw_port, idp_port, mock)
        config["policy"]["bundle"] = str(bundle)
        config["cache"] = {"semantic_embedder": "local", "semantic_min_similarity": 0.8}
        cfg = work / "regogate.yaml"
        cfg.write_text(yaml.safe_dump(config))
        gw = spawn([py, "-m", "pep", "serve", "--config", str(cfg)], {0},
                   env={"REGOGATE_LOG_LEVEL": "WARNING"})
        procs.append(gw)
        gateway = f"http://127.0.0.1:{gw_port}"
        await wait_http(gateway + "/healthz", timeout=120)
        token = subprocess.check_output(
            [py, "-m", "idp", "token", "alice", "--data-dir", str(work)], cwd=ROOT, text=True
        ).strip()
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        url = gateway + "/v1/chat/completions"
        rnd = random.Random(3)
        base = "Please say hello to the benchmark."
        n = args.requests
        results: dict[str, list[float]] = {}
        for rep in range(args.repeats):
            await phase(url, auth, [chat(base)] * 20, gw.pid)  # fill + warm-up
            phases = {
                "exact_hit": (auth, [chat(base)] * n),
                # a new wording each time: exact miss, embedding + search, semantic hit
                "semantic_hit": (auth, [chat(f"{base} (variant {rep}-{i})") for i in range(n)]),
                # unrelated questions: embedding + search, then provider + fill (+ vector)
                "semantic_miss": (auth, [chat(" ".join(rnd.sample(WORDS, 8)) + f" {rep}-{i}?")
                                         for i in range(n)]),
                # Cache-Control: no-cache: no lookup, no embedding; provider + fill
                "plain_miss": ({**auth, "Cache-Control": "no-cache"}, [chat(base)] * n),
            }
            for name, (headers, bodies) in phases.items():
                cpu, p50 = await phase(url, headers, bodies, gw.pid)
                results.setdefault(f"{name}_cpu_ms", []).append(cpu)
                results.setdefault(f"{name}_p50_ms", []).append(p50)
        async with aiohttp.ClientSession() as s, s.get(gateway + "/metrics") as r:
            metrics = await r.text()
        lookups = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                   if line.startswith("regogate_cache_lookups_total{")}
        out: dict[str, Any] = {k: round(statistics.median(v), 3) for k, v in results.items()}
        out["lookups"] = lookups
        out["requests_per_phase"], out["repeats"] = n, args.repeats
        return out
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--index-only", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"index": index_figures()}
    if not args.index_only:
        out["gateway"] = asyncio.run(run(args))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
