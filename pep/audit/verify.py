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
    gap        the checkpoint/heartbeat cadence has a hole while the gateway was up
    unsealed   records older than the sealing interval are covered by no checkpoint

Checkpoints (chain ``checkpoint``): the database's own plus the external witnesses' copies.
Each must be signed by a known key; together they must form ONE chain through
``prev_checkpoint`` (a missing link is a deleted checkpoint); a witness copy that the database
lacks was deleted from it; consecutive checkpoints may be at most ``interval_s`` (plus
tolerance) apart unless the later one is a ``start``. (``users_root`` needs no check here:
a matching head fixes every record before it; bundles and ``--user`` check it.)

Records are streamed; memory is O(number of subjects) for the per-user chain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pep.audit.checkpoints import Checkpoint, key_id
from pep.audit.reader import AuditReader
from pep.audit.records import GENESIS, StoredRecord, index_fields, record_hash, user_key_of

# Slack on top of a checkpoint's interval_s: a commit may wait write_timeout_s (default 5 s)
# for the database before the writer gets to seal.
TOLERANCE_FACTOR = 1.5
TOLERANCE_S = 5.0


def allowed_gap(cp: Checkpoint) -> float | None:
    interval = cp.payload.get("interval_s")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
        return None
    return float(interval) * TOLERANCE_FACTOR + TOLERANCE_S


def parse_time(value: Any) -> datetime | None:
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


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
    now: datetime | None = None,
) -> VerifyReport:
    report = VerifyReport()
    keys = {key_id(k): k for k in public_keys}
    stored = await reader.checkpoints()
    checkpoints = _merge(stored, extra_checkpoints or [])
    report.checkpoints_total = len(checkpoints)
    now = now or datetime.now(UTC)
    chain = _check_checkpoint_chain(report, stored, extra_checkpoints or [], keys, now)
    if chain is None:
        return report
    lo, hi = await reader.seq_bounds(since, until)
    from_genesis = lo is None
    cp_seqs = {cp.seq for cp in checkpoints}
    sealed_to = max(cp_seqs, default=None)  # None: no checkpoint, every record is unsealed
    first_unsealed: StoredRecord | None = None
    hash_at: dict[int, str] = {}
    user_last: dict[str, str] = {}

    prev2: StoredRecord | None = None
    prev1: StoredRecord | None = None
    it = reader.records(lo, hi).__aiter__()

    async def next_record() -> StoredRecord | None:
        try:
            return await it.__anext__()
        except StopAsyncIteration:
            return None

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
            # The record after a broken link is read only to classify the break.
            return _fail(report, _link_break(rec, prev1, prev2, await next_record()))
        elif rec.seq != prev1.seq + 1:
            return _fail(report, _brk("modified", rec, f"seq renumbered (follows seq {prev1.seq})"))
        if rec.user_key is not None:
            if rec.user_key in user_last or from_genesis:
                expected = user_last.get(rec.user_key)
            else:
                # First record of this subject in a --since range: its link must reach the
                # subject's previous record before the range.
                before = await reader.previous_of_user(rec.user_key, rec.seq)
                expected = None if before is None else before.hash
            if rec.user_prev != expected:
                return _fail(report, _brk(
                    "modified", rec, "per-user chain broken: user_prev is not this subject's "
                    "previous record", chain="user"))
            user_last[rec.user_key] = rec.hash
        if rec.seq in cp_seqs:
            hash_at[rec.seq] = rec.hash
        if first_unsealed is None and (sealed_to is None or rec.seq > sealed_to):
            # The oldest record no checkpoint covers (the range may start past the first one).
            first_unsealed = rec
        prev2, prev1 = prev1, rec
    report.users = len(user_last)
    _check_checkpoints(report, checkpoints, hash_at, lo, hi)
    if report.valid:
        # A range ending with --until is held to the same rule: records in it past the newest
        # checkpoint are the unsealed tail (an appended forgery is dated before any later T).
        _check_unsealed(report, chain, first_unsealed, now)
    if report.valid:
        _check_witness_in_db(report, stored, extra_checkpoints or [])
    return report


def _check_witness_in_db(report: VerifyReport, stored: list[Checkpoint],
                         witness: list[Checkpoint]) -> None:
    """The writer publishes a checkpoint only after its database commit: a witness copy the
    database lacks was deleted from it."""
    in_db = {cp.hash for cp in stored}
    for cp in witness:
        if cp.hash not in in_db:
            _cp_fail(report, "deleted", cp.seq,
                     f"{_describe(cp)} is in the external witness but was deleted from the database")
            return


def _merge(a: list[Checkpoint], b: list[Checkpoint]) -> list[Checkpoint]:
    seen: set[str] = set()
    out: list[Checkpoint] = []
    for cp in [*a, *b]:
        h = f"{cp.hash}{cp.signature}"
        if h not in seen:
            seen.add(h)
            out.append(cp)
    return out


def _cp_fail(report: VerifyReport, kind: str, seq: int | None, message: str) -> None:
    _fail(report, Break(kind, "checkpoint", seq, message))


def _describe(cp: Checkpoint) -> str:
    return f"the {cp.payload.get('kind')} checkpoint of {cp.payload.get('time')} (seq {cp.seq})"


def _check_checkpoint_chain(
    report: VerifyReport,
    stored: list[Checkpoint],
    witness: list[Checkpoint],
    keys: dict[str, Ed25519PublicKey],
    now: datetime,
) -> list[Checkpoint] | None:
    """Signatures, witness copies present in the database, one unbroken ``prev_checkpoint``
    chain, and the cadence along it. Returns the chain in order, or None after a failure."""
    everything = _merge(stored, witness)
    if not everything:
        report.warnings.append("no checkpoints: deletion of the newest records cannot be detected")
        return []
    if not keys:
        _cp_fail(report, "checkpoint", None,
                 "no public key given: checkpoint signatures cannot be checked")
        return None
    for cp in everything:
        if not cp.verify(keys):
            where = cp.payload.get("file") or f"seq {cp.payload.get('seq')}"
            _cp_fail(report, "checkpoint", None,
                     f"checkpoint at {where} has an invalid signature or unknown key")
            return None
        report.checkpoints_verified += 1
    by_hash = {cp.hash: cp for cp in everything}
    successor: dict[str | None, Checkpoint] = {}
    for cp in everything:
        prev = cp.payload.get("prev_checkpoint")
        if prev is not None and prev not in by_hash:
            _cp_fail(report, "deleted", cp.seq,
                     f"checkpoint chain broken: the checkpoint before {_describe(cp)} is missing")
            return None
        if prev in successor:
            other = successor[prev]
            _cp_fail(report, "checkpoint", cp.seq,
                     f"checkpoint chain forks: {_describe(cp)} and {_describe(other)} follow the "
                     "same checkpoint" if prev else
                     f"two first checkpoints: {_describe(cp)} and {_describe(other)}")
            return None
        successor[prev] = cp
    chain: list[Checkpoint] = []
    cur = successor.get(None)
    while cur is not None and len(chain) <= len(everything):
        chain.append(cur)
        cur = successor.get(cur.hash)
    if len(chain) != len(everything):
        _cp_fail(report, "checkpoint", None, "checkpoint chain has no single beginning (a cycle)")
        return None
    for a, b in zip(chain, chain[1:], strict=False):
        if b.seq < a.seq:
            _cp_fail(report, "reordered", b.seq,
                     f"{_describe(b)} seals fewer records than {_describe(a)} before it")
            return None
        ta, tb = parse_time(a.payload.get("time")), parse_time(b.payload.get("time"))
        limit = allowed_gap(a)
        if b.payload.get("kind") == "start":
            if a.payload.get("kind") != "close":
                report.warnings.append(
                    f"unclean shutdown: the writer stopped after {_describe(a)} without a "
                    f"close checkpoint; restarted at {b.payload.get('time')}")
            continue
        if ta is None or tb is None or limit is None:
            continue
        if (tb - ta).total_seconds() > limit:
            _cp_fail(report, "gap", b.seq,
                     f"no checkpoint or heartbeat between {a.payload.get('time')} and "
                     f"{b.payload.get('time')} ({(tb - ta).total_seconds():.0f} s, cadence "
                     f"{a.payload.get('interval_s')} s) while the gateway was up: checkpoints "
                     "were deleted or the writer stopped sealing")
            return None
    last = chain[-1]
    limit, t_last = allowed_gap(last), parse_time(last.payload.get("time"))
    if last.payload.get("kind") != "close" and limit and t_last and (
            now - t_last).total_seconds() > limit:
        report.warnings.append(
            f"the newest checkpoint ({_describe(last)}) is older than its cadence and is not a "
            "clean close: the gateway is down, or its newest checkpoints were deleted")
    return chain


def _check_checkpoints(
    report: VerifyReport,
    checkpoints: list[Checkpoint],
    hash_at: dict[int, str],
    lo: int | None,
    hi: int | None,
) -> VerifyReport:
    last_seq = report.last_seq or 0
    latest: Checkpoint | None = None
    beyond = [cp for cp in checkpoints if cp.seq > last_seq]
    for cp in checkpoints:
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
            top = max(beyond, key=lambda c: c.seq)
            return _fail(report, Break(
                "truncated", "checkpoint", last_seq + 1,
                f"records seq {last_seq + 1}..{top.seq} are missing: the checkpoint of "
                f"{top.payload.get('time')} covers {top.seq} records"))
        else:
            return _fail(report, Break("deleted", "checkpoint", cp.seq,
                                       f"the record at checkpoint seq {cp.seq} is missing"))
        if latest is None or (cp.seq, str(cp.payload.get("time"))) >= (
            latest.seq, str(latest.payload.get("time"))):
            latest = cp
    if latest is not None:
        report.latest_checkpoint = {k: latest.payload.get(k) for k in ("seq", "time", "kind", "writer")}
        report.unsealed_records = max(0, last_seq - latest.seq)
    elif report.records:
        report.unsealed_records = report.records
    return report


def _check_unsealed(
    report: VerifyReport, chain: list[Checkpoint], first: StoredRecord | None, now: datetime
) -> None:
    """Records after the newest checkpoint are sealed within ``interval_s`` while the gateway
    runs; older unsealed ones are forged, or the writer stopped sealing (fail)."""
    if first is None or not report.unsealed_records:
        return
    limit = allowed_gap(chain[-1]) if chain else 0.0
    if limit is None:
        return
    t = parse_time(first.index.get("time"))
    age = None if t is None else (now - t).total_seconds()
    if age is not None and -limit <= age <= limit:
        report.warnings.append(f"{report.unsealed_records} record(s) not sealed yet (seq "
                               f"{first.seq}..{report.last_seq}; sealed within {limit:.0f} s)")
        return
    when = "dated in the future" if age is not None and age < 0 else "older than the sealing interval"
    _fail(report, _brk(
        "unsealed", first, f"records seq {first.seq}..{report.last_seq} are covered by no "
        f"signed checkpoint and are {when}: appended by someone without the signing key, or "
        "the gateway stopped sealing", chain="checkpoint"))
