"""The auditor overview, aggregated by the database: requests over time (day or hour) and by
outcome. Counted like ``report_sql``: once per request, from its terminal record."""

from __future__ import annotations

from typing import Any

from pep.audit.query import AuditQuery
from pep.audit.report_sql import Style, _base

BUCKETS = {"day": 10, "hour": 13}  # prefix of the RFC 3339 time: 2025-01-31 | 2025-01-31T10


def series_sql(q: AuditQuery, bucket: str, style: Style, table: str) -> tuple[str, list[Any]]:
    base, params = _base(q, style, table)
    n = BUCKETS[bucket]
    return (
        f"WITH b AS ({base}) SELECT substr(b.time, 1, {n}) AS t, COUNT(*) AS requests, "
        "SUM(CASE WHEN b.decision = 'deny' THEN 1 ELSE 0 END) AS denied, "
        "SUM(CASE WHEN b.decision IN ('error', 'rejected') THEN 1 ELSE 0 END) AS errors, "
        "SUM(COALESCE(b.tokens_in, 0) + COALESCE(b.tokens_out, 0)) AS tokens, "
        "SUM(COALESCE(b.cost_usd, 0)) AS cost_usd FROM b GROUP BY 1 ORDER BY 1", params)


def decisions_sql(q: AuditQuery, style: Style, table: str) -> tuple[str, list[Any]]:
    base, params = _base(q, style, table)
    return (f"WITH b AS ({base}) SELECT b.decision, COUNT(*) FROM b GROUP BY 1 ORDER BY 2 DESC",
            params)


def series_rows(rows: list[Any]) -> list[dict[str, Any]]:
    return [{"t": str(t), "requests": int(r), "denied": int(d or 0), "errors": int(e or 0),
             "tokens": int(tok or 0), "cost_usd": round(float(c or 0.0), 6)}
            for t, r, d, e, tok, c in rows]
