"""Cost of the checkpoint and per-user proof work (docs/performance.md, "Audit checkpoints").

    python bench/audit_proofs.py

Prints, for a trail with U subjects: signing one checkpoint (Merkle root over U heads +
Ed25519), building one user's inclusion proof, checking it, and the amortised cost per record
at the default cadence (one checkpoint per 1,000 records). Also appends N records through the
real SQLite store with per-record checkpoints disabled vs. the default cadence.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pep.audit.checkpoints import Signer
from pep.audit.merkle import inclusion_proof, leaf_hash, root_of, verify_inclusion


def best(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times)


def checkpoint_costs() -> None:
    signer = Signer(Ed25519PrivateKey.generate(), "bench")
    print("subjects  checkpoint_ms  proof_build_ms  proof_check_us  per_record_us(1/1000)")
    for users in (100, 1_000, 10_000, 100_000):
        heads = {f'["https://idp","user{i}"]': f"{i:064x}" for i in range(users)}
        key = next(iter(heads))
        cp = best(lambda: signer.sign(kind="checkpoint", seq=1, head="0" * 64,  # noqa: B023
                                      prev_checkpoint=None, time="t", interval_s=30.0,
                                      user_heads=heads))
        proof = best(lambda: inclusion_proof(heads, key))  # noqa: B023
        index, size, path = inclusion_proof(heads, key)
        root = root_of(heads)
        leaf = leaf_hash(key, heads[key])
        n = 1000
        check = best(lambda: [verify_inclusion(leaf, index, size, path, root) for _ in range(n)]) / n  # noqa: B023
        print(f"{users:>8}  {cp * 1e3:>13.2f}  {proof * 1e3:>14.2f}  {check * 1e6:>14.1f}  "
              f"{cp / 1000 * 1e6:>20.2f}")


async def store_costs(records: int = 5000) -> None:
    from pep.audit.factory import open_store
    from pep.audit.settings import AuditSettings
    from tests.audit.helpers import make_event

    events = [make_event(f"user{n % 500}", n).model_dump(mode="json", exclude_none=True)
              for n in range(records)]
    for label, every in (("no count checkpoints", 10**9), ("default: every 1000", 1000),
                         ("every 100", 100)):
        with tempfile.TemporaryDirectory() as tmp:
            s = AuditSettings(store=f"sqlite:///{Path(tmp) / 'audit.db'}",
                              checkpoint_every_records=every, checkpoint_every_s=3600.0,
                              seal_idle_s=3600.0)
            store = open_store(s, Path(tmp))
            await store.start()
            t = time.process_time()
            for i in range(0, records, 64):
                await asyncio.gather(*(store.append(e) for e in events[i:i + 64]))
            cpu = time.process_time() - t
            await store.close()
        print(f"SQLite store, {records} appends (64 concurrent, 500 subjects), {label}: "
              f"{cpu / records * 1e6:.1f} us CPU per record (whole process)")


if __name__ == "__main__":
    checkpoint_costs()
    asyncio.run(store_costs())
