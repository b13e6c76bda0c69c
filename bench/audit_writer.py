"""The SQLite audit store alone, as the gateway drives it (docs/performance.md, issue 14).

    python bench/audit_writer.py                     # c = 16, 3 x 6,000 requests
    python bench/audit_writer.py --root /work/main   # the same load on another checkout's pep

``--concurrency`` tasks each loop: append a ``request.intent`` and wait until it is durable,
then a ``request.completion`` and wait (what a request does). Prints, per repeat and as the
median, the CPU per request of the writer thread and of the event-loop thread (pthread CPU
clocks), the records per commit, and the requests per second. CPU figures on a shared
machine are inflated: compare runs made back to back, alternated.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _thread_cpu(ident: int | None) -> float:
    return 0.0 if ident is None else time.clock_gettime(time.pthread_getcpuclockid(ident))


def event(user: str, n: int, kind: str) -> dict[str, Any]:
    """Shaped like pep.auditing's events for the benchmark request (digest content mode)."""
    # random, as the gateway's are (pep/request_ids.py); not os.urandom per id, whose GIL
    # release hands the GIL to the writer thread, which the gateway avoids too
    rid = f"req_{random.getrandbits(96):024x}"
    doc: dict[str, Any] = {
        "schema_version": "v1", "event": kind,
        "time": f"2026-12-01T16:{n // 60 % 60:02d}:{n % 60:02d}.{n % 1000000:06d}Z",
        "request_id": rid, "decision_id": rid,
        "who": {"subject": user, "issuer": "http://127.0.0.1:8900/dev", "kind": "user",
                "email": f"{user}@example.com", "name": user.title(), "groups": ["staff"],
                "teams": ["research"], "client_id": "bench-cli", "source_ip": "127.0.0.1"},
        "what": {"api": "chat.completions", "method": "POST", "path": "/v1/chat/completions",
                 "model_requested": "mock-gpt", "model_served": "mock-gpt",
                 "provider": "mock", "deployment": "mock/mock-gpt", "stream": False,
                 "params_digest": hashlib.sha256(b"p").hexdigest()},
        "decision": {"allow": True, "reasons": [], "policy_revision": "sha256:" + "ab" * 32,
                     "engine": "embedded",
                     "obligations": {"quota": [{"scope": "user", "key": user, "window": "day",
                                                "metric": "tokens", "limit": 100000}]}},
        "content": {"mode": "digest", "prompt_sha256": hashlib.sha256(rid.encode()).hexdigest()},
        "extra": {},
    }
    if kind == "request.completion":
        doc["outcome"] = {"status": 200, "tokens_in": 21, "tokens_out": 42,
                          "tokens_estimated": False, "cost_usd": 0.000105, "latency_ms": 3.2}
        doc["content"]["response_sha256"] = hashlib.sha256(rid.encode() + b"r").hexdigest()
    return doc


async def run(requests: int, concurrency: int, window_ms: float, people: int) -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pep.audit.checkpoints import Signer
    from pep.audit.sqlite_store import SqliteAuditStore

    users = [f"user{i:02d}" for i in range(people)]
    with tempfile.TemporaryDirectory() as tmp:
        signer = Signer(Ed25519PrivateKey.generate(), "bench")
        store = SqliteAuditStore(Path(tmp) / "audit.db", signer, commit_window_s=window_ms / 1000,
                                 checkpoint_every_s=3600.0, seal_idle_s=3600.0)
        await store.start()
        writer = store._thread.ident if store._thread is not None else None  # noqa: SLF001
        loop_id = threading.get_ident()
        counter = iter(range(requests))

        async def client() -> None:
            for n in counter:
                user = users[n % len(users)]
                await store.append(event(user, n, "request.intent"))
                await store.append(event(user, n, "request.completion"))

        # warm-up
        await asyncio.gather(*(store.append(event("warm", i, "request.intent"))
                               for i in range(200)))
        t0, w0, l0 = time.perf_counter(), _thread_cpu(writer), _thread_cpu(loop_id)
        tx0, rec0 = store.stats.transactions, store.stats.records
        await asyncio.gather(*(client() for _ in range(concurrency)))
        t1, w1, l1 = time.perf_counter(), _thread_cpu(writer), _thread_cpu(loop_id)
        tx, rec = store.stats.transactions - tx0, store.stats.records - rec0
        await store.close()
    return {"writer_us": (w1 - w0) / requests * 1e6, "loop_us": (l1 - l0) / requests * 1e6,
            "per_commit": rec / max(1, tx), "rps": requests / (t1 - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                    help="checkout whose pep package is measured")
    ap.add_argument("--requests", type=int, default=6000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--users", type=int, default=1,
                    help="people the requests come from (the gateway benchmark: 1, alice)")
    ap.add_argument("--window-ms", type=float, default=1.0, help="audit.commit_window_ms")
    args = ap.parse_args()
    sys.path.insert(0, str(args.root))

    rows = []
    for _ in range(args.repeats):
        rows.append(asyncio.run(run(args.requests, args.concurrency, args.window_ms, args.users)))
        r = rows[-1]
        print(f"  writer {r['writer_us']:6.1f} us/request  loop {r['loop_us']:6.1f} us/request  "
              f"{r['per_commit']:5.1f} records/commit  {r['rps']:7.0f} req/s")
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"median ({args.root}, c={args.concurrency}, {args.users} user(s), load {os.getloadavg()[0]:.1f}): "
          f"writer {med['writer_us']:.1f} us/request, loop {med['loop_us']:.1f} us/request, "
          f"{med['per_commit']:.1f} records/commit, {med['rps']:.0f} req/s")


if __name__ == "__main__":
    main()
