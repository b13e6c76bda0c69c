"""Decision validation memoised on the exact decision document.

The same policy answers most requests with one of a few documents (same caller, same model:
same obligations), and validating one with pydantic in strict mode costs more than the
lookup. ``parse_decision`` is a pure function of the document: the memo keys on the
document's exact JSON (``orjson.dumps``, which keeps key order and tells 1 from 1.0 from
true), stores only documents that validated (an invalid one raises every time, exactly as
before), and is bounded (oldest entry out). Only for documents that came out of a JSON
parser (dicts, lists, strings, numbers, booleans, null -- the embedded engine's are), where
equal JSON means an equal document of equal types.

A hit returns a new ``Decision`` (``model_copy``) with this request's ids; its nested
reasons and obligations are shared with the cached one and with other requests, which is
safe because nothing on the request path mutates a decision in place (every change is a
``model_copy(update=...)``, e.g. pep.steps).
"""

from __future__ import annotations

from typing import Any

import orjson

from pep.policy.contract import Decision
from pep.policy.engine import parse_decision

MEMO_SIZE = 1024


class DecisionMemo:
    __slots__ = ("_entries", "hits", "misses", "size")

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._entries: dict[bytes, Decision] = {}
        self.size = size
        self.hits = 0
        self.misses = 0

    def parse(self, raw: Any, *, revision: str | None, decision_id: str | None) -> Decision:
        base = self.base(raw)
        if base is None:  # not encodable, e.g. an integer beyond 64 bits
            return parse_decision(raw, revision=revision, decision_id=decision_id)
        return stamp(base, revision=revision, decision_id=decision_id)

    def base(self, raw: Any) -> Decision | None:
        """The validated document without ids (raises PolicyError if invalid); None when it
        cannot be keyed."""
        try:
            key = orjson.dumps(raw)
        except (TypeError, orjson.JSONEncodeError):
            return None
        base = self._entries.get(key)
        if base is None:
            self.misses += 1
            base = parse_decision(raw, revision=None, decision_id=None)  # raises if invalid
            if len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = base
        else:
            self.hits += 1
        return base


def stamp(base: Decision, *, revision: str | None, decision_id: str | None) -> Decision:
    """A memoised document as this request's decision: its ids added (a new model)."""
    return base.model_copy(update={
        "policy_revision": base.policy_revision or revision,
        "decision_id": decision_id or base.decision_id,
        "engine_decision_id": None,
    })
