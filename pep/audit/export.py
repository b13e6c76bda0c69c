"""Export shapes for auditors and SIEMs (JSON lines, CSV, OCSF) and the usage report.

OCSF: each record becomes an *API Activity* event (category 6 Application Activity, class_uid
6003), OCSF 1.3 attribute names. ``type_uid = class_uid * 100 + activity_id``; model calls are
activity 1 (Create), reads (model listing, audit reads) activity 2 (Read). Fields with no OCSF
attribute go to ``unmapped``; the record's chain hash is ``metadata.uid`` so a SIEM entry can be
traced back to a verifiable record.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pep.audit.records import StoredRecord

CSV_COLUMNS = (
    "seq", "time", "event", "request_id", "decision_id", "subject", "email", "teams", "client_id",
    "api", "model_requested", "model_served", "provider", "decision", "reasons", "policy_revision",
    "status", "error_code", "tokens_in", "tokens_out", "cost_usd", "latency_ms", "hash",
)
OCSF_VERSION = "1.3.0"
_READ_APIS = {"models.list", "audit.read", "usage.read"}


def csv_row(rec: StoredRecord) -> dict[str, Any]:
    doc = rec.doc()
    who, what = doc.get("who") or {}, doc.get("what") or {}
    decision, outcome = doc.get("decision") or {}, doc.get("outcome") or {}
    return {
        "seq": rec.seq,
        "time": doc.get("time"),
        "event": doc.get("event"),
        "request_id": doc.get("request_id"),
        "decision_id": doc.get("decision_id"),
        "subject": who.get("subject"),
        "email": who.get("email"),
        "teams": ";".join(who.get("teams") or []),
        "client_id": who.get("client_id"),
        "api": what.get("api"),
        "model_requested": what.get("model_requested"),
        "model_served": what.get("model_served"),
        "provider": what.get("provider"),
        "decision": rec.index.get("decision"),
        "reasons": ";".join(str(r.get("code")) for r in decision.get("reasons") or []),
        "policy_revision": decision.get("policy_revision"),
        "status": outcome.get("status"),
        "error_code": outcome.get("error_code"),
        "tokens_in": outcome.get("tokens_in"),
        "tokens_out": outcome.get("tokens_out"),
        "cost_usd": outcome.get("cost_usd"),
        "latency_ms": outcome.get("latency_ms"),
        "hash": rec.hash,
    }


def csv_header() -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(CSV_COLUMNS)
    return buf.getvalue()


def csv_line(rec: StoredRecord) -> str:
    buf = io.StringIO()
    row = csv_row(rec)
    # Spreadsheet formula injection: a cell starting with = + - @ is neutralised.
    csv.writer(buf).writerow([_safe_cell(row[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


def _safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def _epoch_ms(rfc3339: str) -> int | None:
    try:
        return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)
    except ValueError:
        return None


def ocsf_event(rec: StoredRecord, *, product_version: str = "0.1.0") -> dict[str, Any]:
    doc = rec.doc()
    who, what = doc.get("who") or {}, doc.get("what") or {}
    decision, outcome = doc.get("decision"), doc.get("outcome") or {}
    api = what.get("api") or ""
    activity_id = 2 if api in _READ_APIS else (1 if api else 0)
    category = rec.index.get("decision")
    failed = category in ("deny", "error", "unauthenticated", "rejected") or (outcome.get("status") or 200) >= 400
    user: dict[str, Any] = {k: v for k, v in {
        "uid": who.get("subject"), "name": who.get("name") or who.get("subject"),
        "email_addr": who.get("email"), "type": "Service" if who.get("kind") == "service" else None,
        "groups": [{"name": g} for g in who.get("groups") or []] or None,
    }.items() if v is not None}
    actor: dict[str, Any] = {"user": user}
    if who.get("client_id"):
        actor["app_name"] = who["client_id"]
    if decision is not None:
        actor["authorizations"] = [{
            "decision": "allow" if decision.get("allow") else "deny",
            "policy": {"name": "regogate", "uid": decision.get("policy_revision"),
                       "desc": ";".join(str(r.get("code")) for r in decision.get("reasons") or [])},
        }]
    event: dict[str, Any] = {
        "category_uid": 6,
        "category_name": "Application Activity",
        "class_uid": 6003,
        "class_name": "API Activity",
        "activity_id": activity_id,
        "activity_name": {0: "Unknown", 1: "Create", 2: "Read"}[activity_id],
        "type_uid": 6003 * 100 + activity_id,
        "time": _epoch_ms(doc.get("time", "")),
        # A refused request (deny, or rejected before policy: SSRF attempts, forbidden keys)
        # is worth an analyst's look; an error in our own stack more so.
        "severity_id": 3 if category in ("deny", "rejected") else (4 if category == "error" else 1),
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "status_code": str(outcome["status"]) if outcome.get("status") is not None else None,
        "status_detail": outcome.get("error_code"),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "regogate", "vendor_name": "regogate", "version": product_version},
            "uid": rec.hash,
            "correlation_uid": doc.get("request_id"),
            "event_code": doc.get("event"),
            "original_time": doc.get("time"),
            "sequence": rec.seq,
        },
        "actor": actor,
        "api": {
            "operation": api or doc.get("event"),
            "request": {"uid": doc.get("request_id")},
            "response": {k: v for k, v in {
                "code": outcome.get("status"), "error": outcome.get("error_code"),
                "error_message": outcome.get("error_message")}.items() if v is not None},
            "service": {"name": what.get("provider") or "regogate"},
        },
        "src_endpoint": {"ip": who.get("source_ip")} if who.get("source_ip") else {},
        "cloud": {"provider": "self-hosted"},
        "unmapped": {k: v for k, v in {
            "decision_id": doc.get("decision_id"),
            "issuer": who.get("issuer"),
            "teams": who.get("teams"),
            "model_requested": what.get("model_requested"),
            "model_served": what.get("model_served"),
            "tokens_in": outcome.get("tokens_in"),
            "tokens_out": outcome.get("tokens_out"),
            "cost_usd": outcome.get("cost_usd"),
            "latency_ms": outcome.get("latency_ms"),
            "obligations": (decision or {}).get("obligations") or None,
            "content": doc.get("content"),
        }.items() if v is not None},
    }
    return {k: v for k, v in event.items() if v is not None}


REPORT_GROUPS = ("user", "team", "model")
# A request is counted once, from its terminal record (intent records would double count).
_TERMINAL = {"request.completion", "upstream.error", "request.error", "policy.deny", "policy.error",
             "request.rejected", "request.aborted"}


def build_report(records: Iterable[StoredRecord], *, by: str = "user") -> list[dict[str, Any]]:
    """Per group and day: requests, allowed, denies by reason, errors, rejected (refused before
    policy: bad body, unknown model, size), tokens, estimated cost, cache hits and the provider
    cost they saved.

    The in-memory reference for the SQL aggregation the CLI and API use (report_sql)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        ix = rec.index
        if ix["event"] not in _TERMINAL:
            continue
        doc = rec.doc()
        if by == "user":
            keys = [ix.get("subject") or "(anonymous)"]
        elif by == "team":
            keys = list((doc.get("who") or {}).get("teams") or []) or ["(none)"]
        else:
            keys = [ix.get("model_requested") or "(none)"]
        day = str(ix["time"])[:10]
        for key in keys:
            row = rows.get((key, day))
            if row is None:
                row = rows[(key, day)] = {
                    by: key, "day": day, "requests": 0, "allowed": 0, "denied": 0, "errors": 0,
                    "rejected": 0,
                    "denies_by_reason": defaultdict(int), "tokens_in": 0, "tokens_out": 0,
                    "cost_usd": 0.0, "cache_hits": 0, "saved_cost_usd": 0.0,
                }
            row["requests"] += 1
            if ix["decision"] == "deny":
                row["denied"] += 1
                for reason in (doc.get("decision") or {}).get("reasons") or [{"code": "unspecified"}]:
                    row["denies_by_reason"][str(reason.get("code"))] += 1
            elif ix["decision"] == "error":
                row["errors"] += 1
            elif ix["decision"] == "rejected":
                row["rejected"] += 1
            else:
                row["allowed"] += 1
            row["tokens_in"] += ix.get("tokens_in") or 0
            row["tokens_out"] += ix.get("tokens_out") or 0
            row["cost_usd"] += ix.get("cost_usd") or 0.0
            cache = (doc.get("extra") or {}).get("cache") or {}
            if cache.get("hit") and ix["event"] == "request.completion":  # answered from cache
                row["cache_hits"] += 1
                row["saved_cost_usd"] += cache.get("saved_cost_usd") or 0.0
    out = []
    for (_, _), row in sorted(rows.items()):
        row["denies_by_reason"] = dict(sorted(row["denies_by_reason"].items()))
        row["cost_usd"] = round(row["cost_usd"], 6)
        row["saved_cost_usd"] = round(row["saved_cost_usd"], 6)
        out.append(row)
    return out
