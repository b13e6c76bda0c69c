"""The writer's fast path in pep.audit.records computes exactly the stored format v1.

``ChainHead.link_batch`` inlines the record hash and builds each row directly; these tests
hold it to the definitions the verifier uses (``record_hash`` over the canonical header,
``index_fields``, ``user_key_of``), including the memoised user keys and team lists.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pep.audit.records import (
    ALL_COLUMNS,
    GENESIS,
    INDEX_COLUMNS,
    ChainHead,
    StoredRecord,
    canonical_json,
    event_body,
    index_fields,
    index_values,
    record_hash,
    user_key_of,
)


def _doc(n: int, **who: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": "v1", "event": "request.completion" if n % 2 else "request.intent",
        "time": f"2026-12-01T10:00:{n:02d}.000000Z", "request_id": f"req_{n}",
        "decision_id": f"req_{n}", "who": who,
        "what": {"model_requested": "m", "model_served": "m" if n % 3 else None},
        "decision": {"allow": n % 5 != 0}, "extra": {},
    }
    if n % 2:
        doc["outcome"] = {"status": 200, "tokens_in": n, "tokens_out": 2 * n, "cost_usd": 0.5}
    return doc


DOCS = [
    _doc(1, subject="alice", issuer="https://idp", teams=["b", "a"]),
    _doc(2, subject="alice", issuer="https://idp", teams=["b", "a"]),
    _doc(3, subject='bob "quoted" \u00e9', issuer=None, teams=[]),
    _doc(4),
    _doc(5, subject="carol", issuer="https://idp", teams=["x", 7]),  # odd team: not memoised
    _doc(6, subject=42, issuer="https://idp"),  # a non-string subject still gets its key
    _doc(7, subject="alice", issuer="https://other", teams=["b", "a"]),
    {"event": "audit.outage", "time": "t", "request_id": "r"},
]


def _reference_index(doc: dict[str, Any]) -> dict[str, Any]:
    who, what, outcome = doc.get("who") or {}, doc.get("what") or {}, doc.get("outcome") or {}
    decision = doc.get("decision")
    category = "none" if decision is None else ("allow" if decision.get("allow") else "deny")
    return {
        "time": doc.get("time", ""), "event": doc.get("event", ""),
        "request_id": doc.get("request_id", ""), "decision_id": doc.get("decision_id"),
        "subject": who.get("subject"), "issuer": who.get("issuer"), "email": who.get("email"),
        "teams": canonical_json(who.get("teams") or []).decode(),
        "model_requested": what.get("model_requested"), "model_served": what.get("model_served"),
        "decision": category,
        "status": outcome.get("status"), "tokens_in": outcome.get("tokens_in"),
        "tokens_out": outcome.get("tokens_out"), "cost_usd": outcome.get("cost_usd"),
    }


def test_index_values_are_index_fields_in_column_order() -> None:
    for doc in DOCS:
        values = index_values(doc)
        assert len(values) == len(INDEX_COLUMNS)
        assert index_fields(doc) == dict(zip(INDEX_COLUMNS, values, strict=True))
        assert index_fields(doc) == _reference_index(doc)
        assert index_values(doc) == values  # a memo hit gives the same strings


def test_user_keys_are_the_canonical_issuer_subject_pair() -> None:
    for doc in DOCS:
        who = doc.get("who") or {}
        expected = (canonical_json([who.get("issuer"), who["subject"]]).decode()
                    if who.get("subject") else None)
        assert user_key_of(doc) == expected
        assert user_key_of(doc) == expected  # again, from the memo


def test_record_hash_is_over_the_canonical_header() -> None:
    body = b'{"a":1}'
    for ukey, uprev in ((None, None), ('["i","s"]', "ab" * 32)):
        header = orjson.dumps({"v": 1, "user_prev": uprev, "user_key": ukey, "prev": GENESIS},
                              option=orjson.OPT_SORT_KEYS)
        assert record_hash(GENESIS, ukey, uprev, body) == hashlib.sha256(
            header + b"\n" + body).hexdigest()


def test_linked_rows_chain_like_the_verifier_expects() -> None:
    head = ChainHead(10, "f" * 64)
    head.user_heads = {user_key_of(DOCS[0]) or "": "e" * 64}
    looked_up: list[str] = []

    def from_store(key: str) -> str | None:
        looked_up.append(key)
        return None

    records, updates = head.link_batch([event_body(d) for d in DOCS], from_store)
    assert [r.seq for r in records] == list(range(11, 11 + len(DOCS)))
    prev, user_prev = "f" * 64, dict(head.user_heads)
    for rec, doc in zip(records, DOCS, strict=True):
        row = rec.row()
        assert len(row) == len(ALL_COLUMNS)
        stored = rec.stored()
        assert stored == StoredRecord.from_row(row)
        assert stored.row() == row
        ukey = user_key_of(doc)
        uprev = user_prev.get(ukey) if ukey is not None else None
        assert (stored.prev_hash, stored.user_key, stored.user_prev) == (prev, ukey, uprev)
        assert stored.body.encode() == canonical_json(doc)
        assert stored.index == index_fields(doc)
        assert stored.hash == rec.hash == record_hash(prev, ukey, uprev, stored.body.encode())
        prev = stored.hash
        if ukey is not None:
            user_prev[ukey] = stored.hash
    assert updates == {k: v for k, v in user_prev.items() if k in updates}
    assert set(updates) == {user_key_of(d) for d in DOCS if user_key_of(d)}
    # subjects the head had not seen were looked up in the store, once each
    assert sorted(looked_up) == sorted({k for k in updates if k not in head.user_heads})
    head.advance(records, updates)
    assert (head.seq, head.head) == (records[-1].seq, records[-1].hash)
