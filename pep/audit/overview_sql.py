"""The overview and person views from one aggregate query.

The database groups the terminal records (one per request, like ``report_sql``) by time
bucket, decision, model, subject and team list, from index columns only (no JSON body is
parsed); the few thousand groups that come back are folded here into the series, the
per-decision/team/model/user tables and the totals.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from pep.audit.query import AuditQuery
from pep.audit.report_sql import TERMINAL, Style

BUCKETS = {"day": 10, "hour": 13}  # prefix of the RFC 3339 time: 2025-01-31 | 2025-01-31T10
_SUMS = ("requests", "allowed", "denied", "errors", "rejected", "tokens_in", "tokens_out",
         "cost_usd")


def summary_sql(q: AuditQuery, bucket: str, style: Style, table: str) -> tuple[str, list[Any]]:
    where, params = q.where(style)
    marks = []
    for ev in TERMINAL:
        params.append(ev)
        marks.append("?" if style == "sqlite" else f"${len(params)}")
    return (
        f"SELECT substr(time, 1, {BUCKETS[bucket]}), decision, model_requested, subject, teams, "
        "COUNT(*), SUM(COALESCE(tokens_in, 0)), SUM(COALESCE(tokens_out, 0)), "
        f"SUM(COALESCE(cost_usd, 0)) FROM {table} WHERE {where} AND event IN ({', '.join(marks)}) "
        "GROUP BY 1, 2, 3, 4, 5", params)


def _empty(key: str, value: str) -> dict[str, Any]:
    return {key: value, **dict.fromkeys(_SUMS, 0)}


def _add(slot: dict[str, Any], decision: str, n: int, t_in: int, t_out: int, cost: float) -> None:
    slot["requests"] += n
    column = {"deny": "denied", "error": "errors", "rejected": "rejected"}.get(decision, "allowed")
    slot[column] += n
    slot["tokens_in"] += t_in
    slot["tokens_out"] += t_out
    slot["cost_usd"] += cost


def _sorted(groups: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = sorted(groups.values(), key=lambda r: (-r["requests"], str(next(iter(r.values())))))
    for row in out:
        row["cost_usd"] = round(row["cost_usd"], 6)
    return out


def summarise(rows: Iterable[tuple[Any, ...]]) -> dict[str, Any]:
    series: dict[str, dict[str, Any]] = {}
    decisions: dict[str, int] = {}
    groups: dict[str, dict[str, dict[str, Any]]] = {"team": {}, "model": {}, "user": {}}
    total = _empty("all", "all")
    for t, decision, model, subject, teams, n, t_in, t_out, cost in rows:
        n, t_in, t_out, cost = int(n), int(t_in or 0), int(t_out or 0), float(cost or 0.0)
        decision = str(decision)
        args = (decision, n, t_in, t_out, cost)
        _add(series.setdefault(str(t), _empty("t", str(t))), *args)
        _add(total, *args)
        decisions[decision] = decisions.get(decision, 0) + n
        keys = {"model": [model or "(none)"], "user": [subject or "(anonymous)"],
                "team": list(orjson.loads(teams or "[]")) or ["(none)"]}
        for by, values in keys.items():
            for value in values:
                _add(groups[by].setdefault(str(value), _empty(by, str(value))), *args)
    total.pop("all")
    total["cost_usd"] = round(total["cost_usd"], 6)
    points = []
    for t in sorted(series):
        s = series[t]
        points.append({"t": t, "requests": s["requests"], "denied": s["denied"],
                       "errors": s["errors"] + s["rejected"],
                       "tokens": s["tokens_in"] + s["tokens_out"],
                       "cost_usd": round(s["cost_usd"], 6)})
    return {"totals": total, "series": points,
            "by_decision": dict(sorted(decisions.items(), key=lambda kv: -kv[1])),
            "by_team": _sorted(groups["team"]), "by_model": _sorted(groups["model"]),
            "by_user": _sorted(groups["user"])}
