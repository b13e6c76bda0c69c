"""Records the store writes itself: ``request.aborted`` for intents a crash left open, and
``audit.outage`` once the store is writable again after failing.

``request.aborted`` copies the intent's ``request_id``, ``decision_id``, ``who``, ``what`` and
``decision`` (so it joins and counts like any terminal record); ``extra.intent_seq`` names the
intent it closes. ``audit.outage`` has ``extra.from`` / ``extra.to`` (the span), the number of
records that could not be written (``failed_records``: their requests were refused with 503 or,
for best-effort records, counted in ``regogate_audit_write_failures_total``) and the last error.
"""

from __future__ import annotations

import secrets
from typing import Any

from pep.audit.events import AUDIT_SCHEMA_VERSION


def aborted_event(intent: dict[str, Any], intent_seq: int, now: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "event": "request.aborted",
        "time": now,
        "request_id": intent.get("request_id", ""),
        "outcome": {"error_code": "gateway_restarted",
                    "error_message": "the gateway stopped before this request finished"},
        "extra": {"intent_seq": intent_seq},
    }
    for key in ("decision_id", "who", "what", "decision"):
        if intent.get(key) is not None:
            doc[key] = intent[key]
    return doc


def outage_event(outage: dict[str, Any], now: str) -> dict[str, Any]:
    return {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "event": "audit.outage",
        "time": now,
        "request_id": "outage_" + secrets.token_hex(8),
        "extra": {"from": outage["from"], "to": now,
                  "failed_records": int(outage.get("failed_records", 0)),
                  "error": str(outage.get("error", ""))[:500]},
    }
