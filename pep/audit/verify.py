"""Offline verification of a trail: chains, index columns and signed checkpoints.

Reads only the store (through a reader), checkpoints and public keys. Stops at the first
broken link and says what broke:

    modified   a record's content no longer matches its hash, a column disagrees with the
               hashed body, or a signed checkpoint names a different head at its seq
    deleted    a record the chain links to is missing (seq gap or dangling ``prev``)
    inserted   a record sits in the chain that the next record skips over
    reordered  two records are in the wrong order (each links to the other's position)
    truncated  a signed checkpoint covers records that are no longer in the store
    checkpoint a checkpoint's signature is invalid or made with an unknown key

Records are streamed; memory is O(number of subjects) for the per-user chain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pep.audit.checkpoints import Checkpoint, key_id
from pep.audit.reader import AuditReader
from pep.audit.records import GENESIS, StoredRecord, index_fields, record_hash, user_key_of


@dataclass
class Break:
    kind: str
    chain: str  # global | user | checkpoint
    seq: int | None
    message: str
    subject: str | None = None
    request_id: str | None = None


@dataclass
class VerifyReport:
    valid: bool = True
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    users: int = 0
    checkpoints_total: int = 0
    checkpoints_verified: int = 0
    latest_checkpoint: dict[str, Any] | None = None
    unsealed_records: int = 0
    error: Break | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fail(report: VerifyReport, brk: Break) -> VerifyReport:
    report.valid = False
    report.error = brk
    return report


def _brk(kind: str, rec: StoredRecord, message: str, chain: str = "global") -> Break:
    return Break(kind, chain, rec.seq, message, rec.index.get("subject"), rec.index.get("request_id"))


def _content_error(rec: StoredRecord) -> str | None:
    if record_hash(rec.prev_hash, rec.user_key, rec.user_prev, rec.body.encode()) != rec.hash:
        return "record content does not match its hash"
    try:
        doc = rec.doc()
    except ValueError:
        return "record body is not valid JSON"
    if user_key_of(doc) != rec.user_key:
        return "user_key column differs from the hashed record"
    derived = index_fields(doc)
    for col, value in derived.items():
        if rec.index.get(col) != value:
            return f"column {col!r} differs from the hashed record"
    return None


def _link_break(
    rec: StoredRecord, prev1: StoredRecord, prev2: StoredRecord | None, nxt: StoredRecord | None
) -> Break:
    """Classify a record whose ``prev`` is not the hash of the record stored before it."""
    if nxt is not None and rec.prev_hash == nxt.hash:
        return _brk("reordered", rec, f"records seq {rec.seq} and {nxt.seq} are out of order")
    if prev2 is not None and rec.prev_hash == prev2.hash:
        return _brk(
            "inserted", prev1, f"record seq {prev1.seq} is not part of the chain "
            f"(seq {rec.seq} links directly to seq {prev2.seq})"
        )
    if rec.seq > prev1.seq + 1:
        missing = f"{prev1.seq + 1}" if rec.seq == prev1.seq + 2 else f"{prev1.seq + 1}..{rec.seq - 1}"
        return Break("deleted", "global", prev1.seq + 1, f"record(s) seq {missing} are missing",
                     rec.index.get("subject"), rec.index.get("request_id"))
    return _brk(
        "deleted", rec, f"the record seq {rec.seq} links to is missing "
        f"(deleted and renumbered, or seq {prev1.seq} was replaced)"
    )


async def verify_trail(
    reader: AuditReader,
    *,
    public_keys: list[Ed25519PublicKey],
    extra_checkpoints: list[Checkpoint] | None = None,
    since: str | None = None,
    until: str | None = None,
) -> VerifyReport:
    report = VerifyReport()
    keys = {key_id(k): k for k in public_keys}
    checkpoints = _merge(await reader.checkpoints(), extra_checkpoints or [])
    report.checkpoints_total = len(checkpoints)
    lo, hi = await reader.seq_bounds(since, until)
    from_genesis = lo is None
    cp_seqs = {cp.seq for cp in checkpoints}
    hash_at: dict[int, str] = {}
    user_last: dict[str, str] = {}

    prev2: StoredRecord | None = None
    prev1: StoredRecord | None = None
    it = reader.records(lo, hi).__aiter__()
    pending: StoredRecord | None = None

    async def next_record() -> StoredRecord | None:
        nonlocal pending
        if pending is not None:
            rec, pending = pending, None
            return rec
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            return None

    async def peek() -> StoredRecord | None:
        nonlocal pending
        if pending is None:
            pending = await next_record()
        return pending

    while (rec := await next_record()) is not None:
        report.records += 1
        if report.first_seq is None:
            report.first_seq = rec.seq
        report.last_seq = rec.seq
        problem = _content_error(rec)
        if problem is not None:
            return _fail(report, _brk("modified", rec, problem))
        if prev1 is None:
            if from_genesis and rec.prev_hash != GENESIS:
                return _fail(report, Break(
                    "deleted", "global", min(rec.seq, 1),
                    f"the trail does not start at the genesis record (first stored seq {rec.seq})",
                ))
        elif rec.prev_hash != prev1.hash:
            return _fail(report, _link_break(rec, prev1, prev2, await peek()))
        elif rec.seq != prev1.seq + 1:
            return _fail(report, _brk("modified", rec, f"seq renumbered (follows seq {prev1.seq})"))
        if rec.user_key is not None:
            known = rec.user_key in user_last
            if (known or from_genesis) and rec.user_prev != user_last.get(rec.user_key):
                return _fail(report, _brk(
                    "modified", rec, "per-user chain broken: user_prev is not this subject's "
                    "previous record", chain="user"))
            user_last[rec.user_key] = rec.hash
        if rec.seq in cp_seqs:
            hash_at[rec.seq] = rec.hash
        prev2, prev1 = prev1, rec
    report.users = len(user_last)
    return _check_checkpoints(report, checkpoints, keys, hash_at, lo, hi)


def _merge(a: list[Checkpoint], b: list[Checkpoint]) -> list[Checkpoint]:
    seen: set[str] = set()
    out: list[Checkpoint] = []
    for cp in [*a, *b]:
        h = f"{cp.hash}{cp.signature}"
        if h not in seen:
            seen.add(h)
            out.append(cp)
    return out


def _check_checkpoints(
    report: VerifyReport,
    checkpoints: list[Checkpoint],
    keys: dict[str, Ed25519PublicKey],
    hash_at: dict[int, str],
    lo: int | None,
    hi: int | None,
) -> VerifyReport:
    if not checkpoints:
        report.warnings.append("no checkpoints: deletion of the newest records cannot be detected")
    elif not keys:
        return _fail(report, Break("checkpoint", "checkpoint", None,
                                   "no public key given: checkpoint signatures cannot be checked"))
    last_seq = report.last_seq or 0
    latest: Checkpoint | None = None
    for cp in checkpoints:
        if not cp.verify(keys):
            where = cp.payload.get("file") or f"seq {cp.payload.get('seq')}"
            return _fail(report, Break("checkpoint", "checkpoint", None,
                                       f"checkpoint at {where} has an invalid signature or unknown key"))
        report.checkpoints_verified += 1
        in_range = (lo is None or cp.seq >= lo) and (hi is None or cp.seq <= hi)
        if cp.seq == 0 or not in_range:
            pass
        elif cp.seq in hash_at:
            if hash_at[cp.seq] != cp.head:
                return _fail(report, Break(
                    "modified", "checkpoint", cp.seq,
                    f"records up to seq {cp.seq} were rewritten: the checkpoint of "
                    f"{cp.payload.get('time')} signs a different head"))
        elif hi is None and cp.seq > last_seq:
            return _fail(report, Break(
                "truncated", "checkpoint", last_seq + 1,
                f"records seq {last_seq + 1}..{cp.seq} are missing: the checkpoint of "
                f"{cp.payload.get('time')} covers {cp.seq} records"))
        else:
            return _fail(report, Break("deleted", "checkpoint", cp.seq,
                                       f"the record at checkpoint seq {cp.seq} is missing"))
        if latest is None or (cp.seq, str(cp.payload.get("time"))) >= (
            latest.seq, str(latest.payload.get("time"))):
            latest = cp
    if latest is not None:
        report.latest_checkpoint = {k: latest.payload.get(k) for k in ("seq", "time", "kind", "writer")}
        report.unsealed_records = max(0, last_seq - latest.seq)
    return report
