"""``audit report`` aggregated by the database (GROUP BY), not in memory.

Per group (user | team | model) and UTC day: requests (counted once, from the terminal record),
allowed, denied, errors, rejected, denies by reason code, tokens in/out, estimated cost, cache hits
and the cost they saved (``extra.cache`` of completions). The rows are
identical to ``export.build_report`` (the in-memory reference the tests compare against).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

from pep.audit.query import AuditQuery

TERMINAL = ("request.completion", "upstream.error", "request.error", "policy.deny",
            "policy.error", "request.rejected", "request.aborted")
Style = Literal["sqlite", "postgres"]


def _base(q: AuditQuery, style: Style, table: str) -> tuple[str, list[Any]]:
    where, params = q.where(style)
    marks = []
    for ev in TERMINAL:
        params.append(ev)
        marks.append("?" if style == "sqlite" else f"${len(params)}")
    return (f"SELECT * FROM {table} WHERE {where} AND event IN ({', '.join(marks)})", params)


def _key(by: str, style: Style) -> tuple[str, str]:
    """(FROM-clause addition, key expression) over the CTE ``b``."""
    if by == "user":
        return "", "COALESCE(b.subject, '(anonymous)')"
    if by == "model":
        return "", "COALESCE(b.model_requested, '(none)')"
    if style == "sqlite":
        return (", json_each(CASE WHEN b.teams = '[]' THEN '[\"(none)\"]' ELSE b.teams END) tm",
                "tm.value")
    return (" CROSS JOIN LATERAL jsonb_array_elements_text(CASE WHEN b.teams = '[]' "
            "THEN '[\"(none)\"]'::jsonb ELSE b.teams::jsonb END) AS tm(v)", "tm.v")


def _cache_columns(style: Style) -> str:
    """Hits answered from the response cache, and the provider cost they saved."""
    if style == "sqlite":
        hit = "json_extract(b.body, '$.extra.cache.hit') = 1"
        saved = "COALESCE(json_extract(b.body, '$.extra.cache.saved_cost_usd'), 0)"
    else:
        hit = "(b.body::jsonb -> 'extra' -> 'cache' ->> 'hit') = 'true'"
        saved = "COALESCE((b.body::jsonb -> 'extra' -> 'cache' ->> 'saved_cost_usd')::float8, 0)"
    when = f"b.event = 'request.completion' AND {hit}"
    return (f"SUM(CASE WHEN {when} THEN 1 ELSE 0 END) AS cache_hits, "
            f"SUM(CASE WHEN {when} THEN {saved} ELSE 0 END) AS saved_cost_usd")


def report_sql(q: AuditQuery, by: str, style: Style, table: str) -> tuple[str, str, list[Any]]:
    """(totals SQL, reasons SQL, params) -- both take the same params."""
    base, params = _base(q, style, table)
    join, key = _key(by, style)
    day = "substr(b.time, 1, 10)"
    totals = (
        f"WITH b AS ({base}) SELECT {key} AS k, {day} AS day, COUNT(*) AS requests, "
        "SUM(CASE WHEN b.decision = 'deny' THEN 1 ELSE 0 END) AS denied, "
        "SUM(CASE WHEN b.decision = 'error' THEN 1 ELSE 0 END) AS errors, "
        "SUM(CASE WHEN b.decision = 'rejected' THEN 1 ELSE 0 END) AS rejected, "
        "SUM(COALESCE(b.tokens_in, 0)) AS tokens_in, SUM(COALESCE(b.tokens_out, 0)) AS tokens_out, "
        f"SUM(COALESCE(b.cost_usd, 0)) AS cost_usd, {_cache_columns(style)} "
        f"FROM b{join} GROUP BY 1, 2"
    )
    if style == "sqlite":
        reasons_src = ("json_each(COALESCE(json_extract(b.body, '$.decision.reasons'), '[]')) r")
        code = "COALESCE(json_extract(r.value, '$.code'), 'None')"
        empty = "json_array_length(COALESCE(json_extract(b.body, '$.decision.reasons'), '[]')) = 0"
    else:
        reasons_src = ("jsonb_array_elements(COALESCE(b.body::jsonb -> 'decision' -> 'reasons', "
                       "'[]'::jsonb)) AS r(v)")
        code = "COALESCE(r.v ->> 'code', 'None')"
        empty = "jsonb_array_length(COALESCE(b.body::jsonb -> 'decision' -> 'reasons', '[]'::jsonb)) = 0"
    sep = "," if style == "sqlite" else " CROSS JOIN LATERAL"
    reasons = (
        f"WITH b AS ({base}) SELECT {key} AS k, {day} AS day, {code} AS code, COUNT(*) AS n "
        f"FROM b{join}{sep} {reasons_src} WHERE b.decision = 'deny' GROUP BY 1, 2, 3 "
        f"UNION ALL SELECT {key}, {day}, 'unspecified', COUNT(*) FROM b{join} "
        f"WHERE b.decision = 'deny' AND {empty} GROUP BY 1, 2"
    )
    return totals, reasons, params


def assemble(by: str, totals: list[Any], reasons: list[Any]) -> list[dict[str, Any]]:
    by_reason: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for k, day, code, n in reasons:
        slot = by_reason[(str(k), str(day))]
        slot[str(code)] = slot.get(str(code), 0) + int(n)
    rows = []
    for k, day, requests, denied, errors, rejected, t_in, t_out, cost, hits, saved in sorted(
            totals, key=lambda r: (str(r[0]), str(r[1]))):
        rows.append({
            by: str(k), "day": str(day), "requests": int(requests),
            "allowed": int(requests) - int(denied or 0) - int(errors or 0) - int(rejected or 0),
            "denied": int(denied or 0), "errors": int(errors or 0), "rejected": int(rejected or 0),
            "denies_by_reason": dict(sorted(by_reason.get((str(k), str(day)), {}).items())),
            "tokens_in": int(t_in or 0), "tokens_out": int(t_out or 0),
            "cost_usd": round(float(cost or 0.0), 6),
            "cache_hits": int(hits or 0), "saved_cost_usd": round(float(saved or 0.0), 6),
        })
    return rows
