"""Stored record format v1: canonical body, chain header, hash and the derived index columns.

A stored record is the event's canonical JSON (``body``) plus a chain header. Its hash is

    SHA-256( canonical_json({"prev": P, "user_key": K, "user_prev": U, "v": 1}) + b"\\n" + body )

written as lowercase hex. ``prev`` is the hash of the previous record in the global chain
(``GENESIS`` for the first), ``user_key`` identifies the subject (issuer + sub) and
``user_prev`` is the hash of that subject's previous record (``None`` for their first, and for
records without a subject). Canonical JSON = sorted keys, no insignificant whitespace, UTF-8,
non-ASCII unescaped (orjson ``OPT_SORT_KEYS``). The body is hashed *as stored*, so a verifier
in any language needs only SHA-256 and a five-key JSON header; it never re-serialises events.

The position of a record is carried by its ``prev`` link; ``seq`` is a storage index that the
verifier checks for continuity (a gap names deleted records) but is not hashed.
"""

from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass
from typing import Any

import orjson

from pep.audit.events import AuditEvent

GENESIS = "0" * 64
RECORD_FORMAT = 1

# Outcome category per event, for filtering ("decision" column).
_DECISION_BY_EVENT = {
    "auth.failure": "unauthenticated",
    "request.rejected": "rejected",
    "policy.deny": "deny",
    "policy.error": "error",
    "upstream.error": "error",
    "request.error": "error",
    "request.aborted": "error",
}

# Index columns derived from the body; the verifier recomputes them so that nobody can hide a
# record from queries by editing a column while leaving the hashed body alone.
INDEX_COLUMNS = (
    "time",
    "event",
    "request_id",
    "decision_id",
    "subject",
    "issuer",
    "email",
    "teams",
    "model_requested",
    "model_served",
    "decision",
    "status",
    "tokens_in",
    "tokens_out",
    "cost_usd",
)
CHAIN_COLUMNS = ("seq", "hash", "prev_hash", "user_key", "user_prev")
ALL_COLUMNS = CHAIN_COLUMNS + INDEX_COLUMNS + ("body",)


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def event_body(event: AuditEvent | dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    """The canonical body and the document it encodes (kept to avoid parsing it back).

    The request path hands over plain dicts already in this JSON form (``pep.auditing``
    builds them directly, None values omitted, and tests/e2e/test_audit_events.py holds them
    to the AuditEvent schema): validating and dumping a pydantic model twice per request
    cost ~30 us each."""
    doc = event if isinstance(event, dict) else event.model_dump(mode="json", exclude_none=True)
    return canonical_json(doc), doc


def user_key_of(doc: dict[str, Any]) -> str | None:
    who = doc.get("who") or {}
    sub = who.get("subject")
    if not sub:
        return None
    return _user_key(who.get("issuer"), sub)


def _user_key(issuer: Any, sub: Any) -> str:
    # A JSON array keeps issuer and subject unambiguous whatever characters they contain.
    # Memoised: the writer derives it for every record, from a few thousand people at most.
    key = (issuer, sub)
    hit = _USER_KEYS.get(key) if isinstance(issuer, str | None) and isinstance(sub, str) else None
    if hit is None:
        hit = canonical_json([issuer, sub]).decode()
        if isinstance(issuer, str | None) and isinstance(sub, str):
            if len(_USER_KEYS) >= _MEMO_MAX:
                _USER_KEYS.clear()
            _USER_KEYS[key] = hit
    return hit


def record_hash(prev: str, user_key: str | None, user_prev: str | None, body: bytes) -> str:
    # The literal's keys are already in sorted order, so this is the canonical JSON of the
    # header (tests/audit/test_records_fast.py holds it to canonical_json).
    header = orjson.dumps(
        {"prev": prev, "user_key": user_key, "user_prev": user_prev, "v": RECORD_FORMAT}
    )
    return hashlib.sha256(header + b"\n" + body).hexdigest()


def decision_category(doc: dict[str, Any]) -> str:
    cat = _DECISION_BY_EVENT.get(doc.get("event", ""))
    if cat:
        return cat
    decision = doc.get("decision")
    if decision is None:
        return "none"
    return "allow" if decision.get("allow") else "deny"


def index_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(zip(INDEX_COLUMNS, index_values(doc), strict=True))


def index_values(doc: dict[str, Any]) -> tuple[Any, ...]:
    """The index columns of ``doc`` in INDEX_COLUMNS order (what the writer inserts)."""
    who = doc.get("who") or {}
    what = doc.get("what") or {}
    outcome = doc.get("outcome") or {}
    get = outcome.get
    return (
        doc.get("time", ""),
        doc.get("event", ""),
        doc.get("request_id", ""),
        doc.get("decision_id"),
        who.get("subject"),
        who.get("issuer"),
        who.get("email"),
        _teams_json(who.get("teams")),
        what.get("model_requested"),
        what.get("model_served"),
        decision_category(doc),
        get("status"),
        get("tokens_in"),
        get("tokens_out"),
        get("cost_usd"),
    )


def _teams_json(teams: Any) -> str:
    if not teams:
        return "[]"
    if type(teams) is list and all(type(t) is str for t in teams):
        key = tuple(teams)
        hit = _TEAMS.get(key)
        if hit is None:
            hit = canonical_json(teams).decode()
            if len(_TEAMS) >= _MEMO_MAX:
                _TEAMS.clear()
            _TEAMS[key] = hit
        return hit
    return canonical_json(teams).decode()


# Small memos of derived strings (a value is a pure function of its key).
_MEMO_MAX = 4096
_USER_KEYS: dict[tuple[str | None, str], str] = {}
_TEAMS: dict[tuple[str, ...], str] = {}
_INDEX_OF = operator.itemgetter(*INDEX_COLUMNS)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    seq: int
    hash: str
    prev_hash: str
    user_key: str | None
    user_prev: str | None
    body: str
    index: dict[str, Any]

    def doc(self) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(self.body)
        return parsed

    def row(self) -> tuple[Any, ...]:
        return (
            self.seq,
            self.hash,
            self.prev_hash,
            self.user_key,
            self.user_prev,
            *_INDEX_OF(self.index),
            self.body,
        )

    @classmethod
    def from_row(cls, row: Any) -> StoredRecord:
        """Build from a row in ALL_COLUMNS order (sqlite3.Row, asyncpg.Record or tuple)."""
        values = tuple(row)
        n = len(CHAIN_COLUMNS)
        return cls(
            seq=int(values[0]),
            hash=values[1],
            prev_hash=values[2],
            user_key=values[3],
            user_prev=values[4],
            index=dict(zip(INDEX_COLUMNS, values[n : n + len(INDEX_COLUMNS)])),
            body=values[-1],
        )

    def export(self) -> dict[str, Any]:
        """The record as auditors see it: the event plus its chain fields."""
        doc = self.doc()
        doc["chain"] = {
            "seq": self.seq,
            "hash": self.hash,
            "prev": self.prev_hash,
            "user_key": self.user_key,
            "user_prev": self.user_prev,
        }
        return doc


class LinkedRecord:
    """A record the writer has chained and is about to insert: its row in ALL_COLUMNS order."""

    __slots__ = ("_row", "hash", "seq")

    def __init__(self, seq: int, hash: str, row: tuple[Any, ...]) -> None:  # noqa: A002
        self.seq = seq
        self.hash = hash
        self._row = row

    def row(self) -> tuple[Any, ...]:
        return self._row

    def stored(self) -> StoredRecord:
        return StoredRecord.from_row(self._row)


class ChainHead:
    """The writer's view of the chain: global head plus each subject's last hash.

    ``link`` computes the next record without mutating; ``advance`` commits it once the
    transaction holding it has committed, so a failed batch leaves the head untouched.
    """

    def __init__(self, seq: int = 0, head: str = GENESIS) -> None:
        self.seq = seq
        self.head = head
        self.user_heads: dict[str, str] = {}

    def link_batch(
        self, bodies: list[tuple[bytes, dict[str, Any]]], user_head: Any
    ) -> tuple[list[LinkedRecord], dict[str, str]]:
        """Chain ``bodies`` (canonical body, its document) after the head. ``user_head(key)``
        returns a subject's last hash from the store when this head has not seen it yet."""
        records: list[LinkedRecord] = []
        seq, prev = self.seq, self.head
        pending: dict[str, str] = {}
        heads = self.user_heads
        sha256 = hashlib.sha256
        dumps = orjson.dumps
        for body, doc in bodies:
            ukey = user_key_of(doc)
            uprev: str | None = None
            if ukey is not None:
                uprev = pending.get(ukey) or heads.get(ukey) or user_head(ukey)
            # record_hash, inlined (the header's keys are written in sorted order)
            h = sha256(dumps({"prev": prev, "user_key": ukey, "user_prev": uprev,
                              "v": RECORD_FORMAT}) + b"\n" + body).hexdigest()
            seq += 1
            records.append(LinkedRecord(
                seq, h, (seq, h, prev, ukey, uprev, *index_values(doc), body.decode())))
            if ukey is not None:
                pending[ukey] = h
            prev = h
        return records, pending

    def advance(self, records: list[LinkedRecord], user_updates: dict[str, str]) -> None:
        if records:
            self.seq = records[-1].seq
            self.head = records[-1].hash
        self.user_heads.update(user_updates)
