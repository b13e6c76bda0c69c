"""The SQLite audit store alone, as the gateway drives it (docs/performance.md, issue 14).

    python bench/audit_writer.py                     # c = 16, 3 x 6,000 requests
    python bench/audit_writer.py --root /work/main   # the same load on another checkout's pep
    python bench/audit_writer.py --trees             # + which b-tree the WAL frames are of
    python bench/audit_writer.py --direct 400        # 400 commits of 16 in one thread, for
                                                     # callgrind (see below)

``--concurrency`` tasks each loop: append a ``request.intent`` and wait until it is durable,
then a ``request.completion`` and wait (what a request does). Request ids come from the
measured checkout's ``pep.request_ids`` (so ``--root`` measures its id format too). Prints,
per repeat and as the median, the CPU per request of the writer thread and of the event-loop
thread (pthread CPU clocks), the records and the WAL frames per commit (from the ``-shm``
wal-index header, read around each commit), and the requests per second. CPU figures on a
shared machine are inflated: compare runs made back to back, alternated.

``--direct K`` writes K commits of 16 records (8 new intents, the 8 completions of the
previous commit's requests) through the store's own ``_write`` from one thread, with no event
loop running: deterministic work, to count instructions with
``valgrind --tool=callgrind --callgrind-out-file=/dev/null``; ``--direct K --no-write``
builds the same records without writing them, so (Ir(write) - Ir(no write)) / 16K is the
writer's instructions per record (linking, insert, commit; the kernel's part of the WAL
writes and the fsync is not counted by valgrind: the frames figure stands for it).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import mmap
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _thread_cpu(ident: int | None) -> float:
    return 0.0 if ident is None else time.clock_gettime(time.pthread_getcpuclockid(ident))


def _thread_sys(native_id: int | None) -> float:
    """The thread's system (kernel) CPU seconds from /proc (clock ticks): the WAL writes and
    the fsync are charged there."""
    if native_id is None:
        return 0.0
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def _thread_faults(native_id: int | None) -> int:
    """The thread's minor page faults so far (/proc)."""
    if native_id is None:
        return 0
    with open(f"/proc/self/task/{native_id}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[7])


def id_maker() -> Any:
    """The measured checkout's request ids, made as pep.steps makes them."""
    from pep.request_ids import IdPool

    pool = IdPool()
    if hasattr(pool, "next_id"):
        return pool.next_id
    return lambda: "req_" + pool.next_hex()  # before time-prefixed ids


def event(user: str, n: int, kind: str, rid: str) -> dict[str, Any]:
    """Shaped like pep.auditing's events for the benchmark request (digest content mode)."""
    doc: dict[str, Any] = {
        "schema_version": "v1", "event": kind,
        # one request per ms, so times grow with n as the gateway's do (a record's time is
        # when it was made)
        "time": f"2026-12-01T{n // 3600000 % 24:02d}:{n // 60000 % 60:02d}:"
                f"{n // 1000 % 60:02d}.{n % 1000:03d}000Z",
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


class WalFrames:
    """Counts the WAL frames each ``_write`` of the store appends (wal-index header field
    mxFrame, native byte order, offset 16 of the ``-shm`` file; it restarts from 0 when a
    write follows a completed checkpoint). With ``trees`` it also reads the page number of
    each new frame from the WAL, to charge frames to b-trees at the end (``dbstat``)."""

    def __init__(self, db: Path, trees: bool) -> None:
        self.db, self.trees = db, trees
        self.commits = self.frames = 0
        self.pages: dict[int, int] = {}
        self._shm: mmap.mmap | None = None

    def _mx(self) -> int:
        if self._shm is None:
            with open(str(self.db) + "-shm", "rb") as f:
                self._shm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return int(struct.unpack_from("=I", self._shm, 16)[0])

    def wrap(self, store: Any) -> None:
        inner = store._write  # noqa: SLF001

        def write(conn: Any, batch: list[Any]) -> None:
            before = self._mx()
            inner(conn, batch)
            after = self._mx()
            start = before if after >= before else 0
            if after > start:
                self.commits += 1
                self.frames += after - start
                if self.trees:
                    self._read_pages(start, after)

        store._write = write  # noqa: SLF001

    def _read_pages(self, start: int, end: int) -> None:
        with open(str(self.db) + "-wal", "rb") as f:
            page_size = struct.unpack(">I", f.read(12)[8:12])[0]
            for i in range(start, end):
                f.seek(32 + i * (24 + page_size))
                pgno = struct.unpack(">I", f.read(4))[0]
                self.pages[pgno] = self.pages.get(pgno, 0) + 1

    def by_tree(self) -> dict[str, float]:
        import sqlite3

        owner = dict(sqlite3.connect(self.db).execute("SELECT pageno, name FROM dbstat"))
        out: dict[str, float] = {}
        for pgno, n in self.pages.items():
            name = owner.get(pgno, "(free or new)")
            out[name] = out.get(name, 0) + n / max(1, self.commits)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def close(self) -> None:
        if self._shm is not None:
            self._shm.close()


async def run(requests: int, concurrency: int, window_ms: float, people: int,
              trees: bool) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pep.audit.checkpoints import Signer
    from pep.audit.sqlite_store import SqliteAuditStore

    users = [f"user{i:02d}" for i in range(people)]
    with tempfile.TemporaryDirectory() as tmp:
        signer = Signer(Ed25519PrivateKey.generate(), "bench")
        store = SqliteAuditStore(Path(tmp) / "audit.db", signer, commit_window_s=window_ms / 1000,
                                 checkpoint_every_s=3600.0, seal_idle_s=3600.0)
        await store.start()
        wal = WalFrames(Path(tmp) / "audit.db", trees)
        wal.wrap(store)
        new_id = id_maker()
        writer = store._thread.ident if store._thread is not None else None  # noqa: SLF001
        writer_tid = store._thread.native_id if store._thread is not None else None  # noqa: SLF001
        loop_id = threading.get_ident()
        counter = iter(range(requests))

        async def client() -> None:
            for n in counter:
                user = users[n % len(users)]
                rid = new_id()
                await store.append(event(user, n, "request.intent", rid))
                await store.append(event(user, n, "request.completion", rid))

        # warm-up
        await asyncio.gather(*(store.append(event("warm", i, "request.intent", new_id()))
                               for i in range(200)))
        t0, w0, l0 = time.perf_counter(), _thread_cpu(writer), _thread_cpu(loop_id)
        s0, f0 = _thread_sys(writer_tid), _thread_faults(writer_tid)
        tx0, rec0 = store.stats.transactions, store.stats.records
        wal.commits = wal.frames = 0
        wal.pages.clear()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        t1, w1, l1 = time.perf_counter(), _thread_cpu(writer), _thread_cpu(loop_id)
        s1, f1 = _thread_sys(writer_tid), _thread_faults(writer_tid)
        tx, rec = store.stats.transactions - tx0, store.stats.records - rec0
        await store.close()
        by_tree = wal.by_tree() if trees else {}
        wal.close()
    return {"writer_us": (w1 - w0) / requests * 1e6, "writer_sys_us": (s1 - s0) / requests * 1e6,
            "faults": (f1 - f0) / requests,
            "loop_us": (l1 - l0) / requests * 1e6,
            "per_commit": rec / max(1, tx), "frames": wal.frames / max(1, wal.commits),
            "rps": requests / (t1 - t0), "trees": by_tree}


def direct(commits: int, write: bool) -> None:
    """``--direct``: see the module docstring."""
    import asyncio as aio

    from pep.audit.records import canonical_json
    from pep.audit.sqlite_store import SqliteAuditStore

    new_id = id_maker()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteAuditStore(Path(tmp) / "audit.db", signer=None,  # type: ignore[arg-type]
                                 checkpoint_every_records=10**9)
        conn = store._open()  # noqa: SLF001
        store._loop = aio.new_event_loop()  # noqa: SLF001 -- _write hands it the (no) futures
        prev: list[str] = []
        n = 0
        for _ in range(commits):
            rids = [new_id() for _ in range(8)]
            docs = [event("user00", n + i, "request.intent", r) for i, r in enumerate(rids)]
            docs += [event("user00", n - 8 + i, "request.completion", r) for i, r in enumerate(prev)]
            n += 8
            prev = rids
            batch = [(canonical_json(d), d, None) for d in docs]
            if write:
                store._write(conn, batch)  # noqa: SLF001
        conn.close()
        store._loop.close()  # noqa: SLF001
    print(f"direct: {commits} commits, write={write}")


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
    ap.add_argument("--trees", action="store_true", help="WAL frames per commit by b-tree")
    ap.add_argument("--direct", type=int, default=0, metavar="K",
                    help="K commits of 16 records from one thread (for callgrind)")
    ap.add_argument("--no-write", action="store_true", help="with --direct: build, do not write")
    args = ap.parse_args()
    sys.path.insert(0, str(args.root))
    if args.direct or args.no_write:
        direct(args.direct, not args.no_write)
        return

    rows = []
    for _ in range(args.repeats):
        rows.append(asyncio.run(run(args.requests, args.concurrency, args.window_ms, args.users,
                                    args.trees)))
        r = rows[-1]
        print(f"  writer {r['writer_us']:6.1f} us/request (kernel {r['writer_sys_us']:5.1f}, {r['faults']:4.1f} page faults)  loop {r['loop_us']:6.1f} us/request  "
              f"{r['per_commit']:5.1f} records/commit  {r['frames']:5.1f} WAL frames/commit  "
              f"{r['rps']:7.0f} req/s")
        if r["trees"]:
            print("    frames/commit by b-tree: " + ", ".join(
                f"{name} {n:.1f}" for name, n in r["trees"].items()))
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "trees"}
    print(f"median ({args.root}, c={args.concurrency}, {args.users} user(s), load {os.getloadavg()[0]:.1f}): "
          f"writer {med['writer_us']:.1f} us/request (kernel {med['writer_sys_us']:.1f}), loop {med['loop_us']:.1f} us/request, "
          f"{med['per_commit']:.1f} records/commit, {med['frames']:.1f} WAL frames/commit, "
          f"{med['rps']:.0f} req/s")


if __name__ == "__main__":
    main()
