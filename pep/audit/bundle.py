"""Per-user completeness proofs: one user's records plus what makes them checkable offline.

A bundle (``regogate audit export --user alice --proof``) is one JSON document:

    {"format": "regogate-audit-bundle", "v": 1,
     "checkpoint": {"payload": {... "seq": S, "users": N, "users_root": R ...}, "signature": "..."},
     "subjects": [{"user_key": K,
                   "records": [{"seq", "hash", "prev", "user_prev", "body"}, ...],
                   "proof": {"leaf_index": i, "tree_size": N, "path": ["<hex>", ...]}}]}

``body`` is the record exactly as hashed. Checking it needs the public key only:

1. the checkpoint's Ed25519 signature over its canonical payload;
2. per subject: every record's hash (records.record_hash), its body's subject is K, the first
   record's ``user_prev`` is null, each next one's ``user_prev`` is the previous hash, seqs
   increase and none exceeds S;
3. leaf = merkle.leaf_hash(K, hash of the last record); the audit path leads from the leaf at
   ``leaf_index`` to ``users_root`` (RFC 9162 2.1.3.2) in a tree of ``users`` leaves.

Dropping the subject's newest record breaks 3, any other one breaks 2.
"""

from __future__ import annotations

from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pep.audit.checkpoints import Checkpoint, key_id
from pep.audit.merkle import inclusion_proof, leaf_hash, root_of, verify_inclusion
from pep.audit.query import AuditQuery
from pep.audit.reader import AuditReader
from pep.audit.records import StoredRecord, record_hash, user_key_of
from pep.audit.verify import Break, VerifyReport

FORMAT = "regogate-audit-bundle"


class BundleError(Exception):
    """No bundle can be built (no sealed records for the user, no Merkle checkpoint)."""


async def latest_rooted_checkpoint(
    reader: AuditReader, witness: list[Checkpoint] | None = None
) -> Checkpoint:
    """The newest checkpoint with a ``users_root``, from the database or a witness (so
    deleting the newest checkpoint rows does not make an older, shorter history provable)."""
    rooted = [cp for cp in [*await reader.checkpoints(), *(witness or [])]
              if "users_root" in cp.payload]
    if not rooted:
        raise BundleError("no checkpoint commits to per-user heads yet (users_root)")
    return max(rooted, key=lambda cp: (cp.seq, str(cp.payload.get("time"))))


async def build_bundle(
    reader: AuditReader, user: str, witness: list[Checkpoint] | None = None
) -> dict[str, Any]:
    """``user``: subject or e-mail (like ``--user`` elsewhere); one section per issuer."""
    cp = await latest_rooted_checkpoint(reader, witness)
    heads = await reader.user_heads_at(cp.seq)
    if root_of(heads) != cp.payload["users_root"]:
        raise BundleError(f"the store's per-user heads at seq {cp.seq} do not match the signed "
                          "checkpoint: run `regogate audit verify`")
    by_key: dict[str, list[StoredRecord]] = {}
    async for rec in reader.matching(AuditQuery(user=user)):
        if rec.user_key is not None and rec.seq <= cp.seq:
            by_key.setdefault(rec.user_key, []).append(rec)
    if not by_key:
        raise BundleError(f"no sealed records for {user!r}")
    subjects = []
    for key, recs in sorted(by_key.items()):
        index, size, path = inclusion_proof(heads, key)
        subjects.append({
            "user_key": key,
            "records": [{"seq": r.seq, "hash": r.hash, "prev": r.prev_hash,
                         "user_prev": r.user_prev, "body": r.body} for r in recs],
            "proof": {"leaf_index": index, "tree_size": size, "path": path},
        })
    return {"format": FORMAT, "v": 1,
            "checkpoint": {"payload": cp.payload, "signature": cp.signature},
            "subjects": subjects}


def _bad(report: VerifyReport, kind: str, message: str, seq: int | None = None,
         subject: str | None = None, chain: str = "user") -> VerifyReport:
    report.valid = False
    report.error = Break(kind, chain, seq, message, subject)
    return report


def verify_bundle(bundle: Any, public_keys: list[Ed25519PublicKey]) -> VerifyReport:
    report = VerifyReport()
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT or bundle.get("v") != 1:
        return _bad(report, "format", f"not a {FORMAT} v1 document", chain="bundle")
    try:
        cp = Checkpoint(dict(bundle["checkpoint"]["payload"]), str(bundle["checkpoint"]["signature"]))
        subjects = list(bundle["subjects"])
    except (KeyError, TypeError, ValueError):
        return _bad(report, "format", "bundle lacks checkpoint or subjects", chain="bundle")
    report.checkpoints_total = 1
    if not cp.verify({key_id(k): k for k in public_keys}):
        return _bad(report, "checkpoint", "the bundle's checkpoint has an invalid signature or "
                    "unknown key", chain="checkpoint")
    report.checkpoints_verified = 1
    report.latest_checkpoint = {k: cp.payload.get(k) for k in ("seq", "time", "kind", "writer")}
    root = cp.payload.get("users_root")
    if not isinstance(root, str):
        return _bad(report, "checkpoint", "the checkpoint has no users_root", chain="checkpoint")
    for section in subjects:
        problem = _check_subject(report, section, cp, root)
        if problem is not None:
            return problem
    report.users = len(subjects)
    return report


def _check_subject(report: VerifyReport, section: Any, cp: Checkpoint, root: str) -> VerifyReport | None:
    try:
        key = str(section["user_key"])
        records = list(section["records"])
        proof = section["proof"]
        index, size, path = int(proof["leaf_index"]), int(proof["tree_size"]), list(proof["path"])
    except (KeyError, TypeError, ValueError):
        return _bad(report, "format", "malformed subject section", chain="bundle")
    prev_hash: str | None = None
    prev_seq = 0
    subject = None
    for rec in records:
        try:
            seq, h, body = int(rec["seq"]), str(rec["hash"]), str(rec["body"])
            uprev = rec.get("user_prev")
            doc = orjson.loads(body)
            subject = (doc.get("who") or {}).get("subject")
        except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
            return _bad(report, "format", "malformed record", chain="bundle")
        report.records += 1
        report.first_seq = report.first_seq or seq
        report.last_seq = seq
        if record_hash(str(rec.get("prev")), key, uprev, body.encode()) != h:
            return _bad(report, "modified", "record content does not match its hash", seq, subject)
        if user_key_of(doc) != key:
            return _bad(report, "modified", "record belongs to another subject", seq, subject)
        if uprev != prev_hash:
            what = ("the subject's first record is missing" if prev_hash is None else
                    "a record of this subject before it is missing")
            return _bad(report, "deleted", f"per-user chain broken at seq {seq}: {what}", seq, subject)
        if seq <= prev_seq or seq > cp.seq:
            return _bad(report, "reordered", f"seq {seq} out of order or beyond the checkpoint",
                        seq, subject)
        prev_hash, prev_seq = h, seq
    if prev_hash is None:
        return _bad(report, "deleted", f"no records for {key}", None)
    if size != cp.payload.get("users") or not verify_inclusion(
            leaf_hash(key, prev_hash), index, size, path, root):
        return _bad(report, "truncated", f"the last record in the bundle (seq {prev_seq}) is not "
                    f"the subject's head signed at seq {cp.seq}: newer records were left out "
                    "(or the proof is wrong)", prev_seq + 1, subject)
    return None
