#!/usr/bin/env python3
"""regogate beside other gateways: CPU and latency at several concurrency levels, one run.

    .venv/bin/python bench/compare.py                       # regogate, Portkey, LiteLLM
    .venv/bin/python bench/compare.py --peers none          # regogate only (no installs)
    [--concurrency 1,16,64] [--requests 2000] [--repeats 3] [--json]

An OpenAI-compatible mock provider runs in its own process (``python -m adapters.mock_server``,
reached over HTTP like a real provider). Each gateway routes ``mock-gpt`` to it and is pinned
to CPU 0; the mock, the dev IdP and this load generator run on the other CPUs. regogate runs
with everything on (dev-IdP tokens verified, embedded policy with the output decision, content
inspection, usage counters, durable SQLite audit) through its ``openai_compatible`` adapter.
Peers (``bench/peers.py``: Portkey 1.15.2 from npm, LiteLLM 1.106.12 from PyPI, installed into
a cache folder) do none of that. With peers the whole benchmark re-runs itself inside a fresh
network namespace with only loopback (``unshare --net``): nothing can leave the machine.

Per gateway, concurrency and mode (plain, streaming): CPU per request (utime + stime of the
gateway's process tree over the measured phase, from /proc), p50/p99 latency (for streams:
time to first byte), requests per second; min / median / max over the repeats; RSS at the end.
``direct`` is the mock called without a gateway (the latency baseline). Repeats alternate
between gateways (round robin), so a noisy neighbour hits all of them alike. Warm-up is
discarded. Timings are printed, never asserted (no test runs this).
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
import peers  # noqa: E402

ROOT = ov.ROOT
# LiteLLM spends ~15 ms of CPU per request: fewer requests keep the run short, still
# hundreds per figure.
PEER_SHARE = {"litellm": 8}


def rss_mb(pid: int) -> float:
    total = 0.0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


class Target:
    """One gateway under test: how to start it and how to call it."""

    def __init__(self, name: str, url: str, headers: dict[str, str], proc: Any,
                 extra: list[Any] | None = None, share: int = 1) -> None:
        self.name, self.url, self.headers, self.proc = name, url, headers, proc
        self.extra = extra or []  # helper processes (the dev IdP) stopped with it
        self.share = share  # requests / share per measurement

    def stop(self) -> None:
        for p in [self.proc, *self.extra]:
            if p is None:
                continue
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


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


async def start_peer(name: str, work: Path, mock: str) -> Target:
    port = ov.free_port()
    if name == "portkey":
        cmd, env = peers.portkey_command(port)
        headers = peers.portkey_headers(mock)
    else:
        cmd, env = peers.litellm_command(port, work, mock)
        headers = peers.litellm_headers()
    proc = ov.spawn(cmd, {0}, env=env)
    url = f"http://127.0.0.1:{port}"
    await ov.wait_http(url + ("/health/liveliness" if name == "litellm" else "/"), timeout=120)
    return Target(name, url, headers, proc, share=PEER_SHARE.get(name, 1))


def direct_target(mock: str, mock_proc: Any) -> Target:
    return Target("direct", mock, {"Authorization": f"Bearer {peers.BENCH_KEY}",
                                   "Content-Type": "application/json"}, mock_proc)


async def measure(t: Target, conc: int, n: int, warmup: int, stream: bool) -> dict[str, float]:
    n, warmup = max(100, n // t.share), max(50, warmup // t.share)
    body = json.dumps({**ov.BODY, "stream": stream}).encode()
    url = t.url + "/v1/chat/completions"
    await ov.load(url, t.headers, body, warmup, conc, stream=stream)
    cpu0, t0 = peers.tree_cpu_seconds(t.proc.pid, ov.CLK_TCK), time.perf_counter()
    lat = await ov.load(url, t.headers, body, n, conc, stream=stream)
    cpu1, t1 = peers.tree_cpu_seconds(t.proc.pid, ov.CLK_TCK), time.perf_counter()
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
                               "cpu_model": _cpu_model(), "load_avg": os.getloadavg()[0],
                               "requests": args.requests, "repeats": args.repeats,
                               "netns": os.environ.get(peers.NETNS_ENV) == "1",
                               "gateways": {}}
    targets: list[Target] = []
    try:
        await ov.wait_http(mock + "/v1/models")
        targets.append(await start_regogate(work, mock))
        for name in args.peers:
            targets.append(await start_peer(name, work, mock))
        if args.direct:
            targets.append(direct_target(mock, mock_proc))
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        for stream in (False, True):
            for conc in args.concurrency:
                mode = f"{'stream' if stream else 'plain'}_c{conc}"
                for rep in range(args.repeats):  # round robin: noise hits every gateway alike
                    print(f"[bench] {mode} repeat {rep + 1}/{args.repeats}", file=sys.stderr,
                          flush=True)
                    for t in targets:
                        runs.setdefault((t.name, mode), []).append(
                            await measure(t, conc, args.requests, args.warmup, stream))
        for t in targets:
            per: dict[str, Any] = {mode: summarise(r) for (name, mode), r in runs.items()
                                   if name == t.name}
            per["rss_mb"] = round(rss_mb(t.proc.pid), 1)
            results["gateways"][t.name] = per
        results["load_avg_end"] = os.getloadavg()[0]
    finally:
        for t in targets:
            if t.name != "direct":
                t.stop()
        mock_proc.terminate()
        mock_proc.wait(timeout=10)
    return results


def _commit() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                       text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def report(r: dict[str, Any]) -> None:
    fmt = lambda v: " / ".join(f"{x:.3f}" for x in v)  # noqa: E731
    print(f"{r['date']} commit {r['commit']}, {r['cpus']} x {r['cpu_model']}, load average "
          f"{r['load_avg']:.2f} -> {r.get('load_avg_end', 0):.2f}, "
          f"{'loopback-only network namespace' if r['netns'] else 'host network'}; "
          f"{r['requests']} requests x {r['repeats']} repeats; min / median / max")
    gws = r["gateways"]
    for name, per in gws.items():
        label = "direct to the mock (no gateway)" if name == "direct" else name
        print(f"\n{label} (RSS {per['rss_mb']} MB)")
        print(f"  {'mode':<12} {'CPU/request ms':<24} {'p50 ms (stream: TTFB)':<24} "
              f"{'p99 ms':<24} req/s")
        for mode, m in per.items():
            if mode == "rss_mb":
                continue
            print(f"  {mode:<12} {fmt(m['cpu_ms']):<24} {fmt(m['p50_ms']):<24} "
                  f"{fmt(m['p99_ms']):<24} {m['rps'][1]:.0f}")
    reg = gws["regogate"]
    modes = [m for m in reg if m != "rss_mb"]
    print("\nmedians side by side (CPU per request; ratio = regogate / peer)")
    head = f"  {'mode':<12} {'regogate ms':<12}"
    for name in gws:
        if name not in ("regogate", "direct"):
            head += f" {name + ' ms':<14} {'ratio':<7}"
    if "direct" in gws:
        head += f" {'added p50 ms (stream: TTFB)':<28}"
    print(head)
    for mode in modes:
        cpu = reg[mode]["cpu_ms"][1]
        line = f"  {mode:<12} {cpu:<12.3f}"
        for name, per in gws.items():
            if name in ("regogate", "direct"):
                continue
            other = per[mode]["cpu_ms"][1]
            line += f" {other:<14.3f} {cpu / other if other else float('nan'):<7.2f}"
        if "direct" in gws:
            line += f" {reg[mode]['p50_ms'][1] - gws['direct'][mode]['p50_ms'][1]:<28.3f}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peers", default="portkey,litellm",
                        help="comma-separated: portkey, litellm; or none")
    parser.add_argument("--no-direct", dest="direct", action="store_false",
                        help="skip the direct-to-mock baseline")
    parser.add_argument("--no-isolate", action="store_true",
                        help="run peers on the host network (they may try to reach the internet)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.peers = [] if args.peers in ("", "none") else args.peers.split(",")
    for name in args.peers:
        if name not in ("portkey", "litellm"):
            parser.error(f"unknown peer {name!r} (portkey, litellm)")
    if args.peers and not args.no_isolate:
        if os.environ.get(peers.NETNS_ENV) != "1":
            peers.install(args.peers)  # needs the registries: before the namespace
        peers.isolate([str(Path(__file__).resolve()), *sys.argv[1:]])
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r, indent=2))
        return
    report(r)


if __name__ == "__main__":
    main()
