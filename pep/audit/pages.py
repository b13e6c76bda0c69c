"""Keyset pagination for the auditor API: opaque cursors bound to the filters they page.

A cursor is ``base64url(JSON [1, order, seq, digest])``: the last record a page showed (its
``seq``), the direction and a digest of the filters. The next page is ``seq < S`` (newest
first) or ``seq > S`` (oldest first), an index range, not an OFFSET, so a page costs the same
at record 100 and record 100,000, and records appended meanwhile (higher seqs) never shift a
newest-first page. A cursor grants nothing: every call is authorised by policy on its filters,
and a cursor made for other filters, another order or edited by hand is a 400, so a page URL
always shows what its filters say. No secret is needed for that, so cursors survive restarts
and replicas.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
from typing import Any

import orjson

from pep.audit.query import AuditQuery, QueryError

_VERSION = 1
_MAX_LEN = 200


def _digest(q: AuditQuery) -> str:
    doc = orjson.dumps([q.filters(), q.order], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(doc).hexdigest()[:24]


def encode_cursor(q: AuditQuery, seq: int) -> str:
    raw = orjson.dumps([_VERSION, q.order, seq, _digest(q)])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def apply_cursor(q: AuditQuery, cursor: str | None) -> AuditQuery:
    """``q`` positioned after ``cursor`` (None: the first page). QueryError when the cursor
    is malformed or belongs to other filters or another order."""
    if not cursor:
        return q
    seq = _decode(cursor, q)
    if q.order == "desc":
        return dataclasses.replace(q, before_seq=seq)
    return dataclasses.replace(q, after_seq=seq)


def _decode(cursor: str, q: AuditQuery) -> int:
    bad = QueryError("cursor is not valid; start again from the first page")
    if len(cursor) > _MAX_LEN:
        raise bad
    try:
        doc: Any = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise bad from exc
    if (not isinstance(doc, list) or len(doc) != 4 or doc[0] != _VERSION
            or doc[1] not in ("asc", "desc") or type(doc[2]) is not int or not 0 <= doc[2] < 2**62
            or not isinstance(doc[3], str)):
        raise bad
    if doc[1] != q.order or doc[3] != _digest(q):
        raise QueryError("cursor belongs to other filters or another order; "
                         "start again from the first page")
    seq: int = doc[2]
    return seq
