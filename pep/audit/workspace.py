"""The auditor workspace's aggregate views and exports (routes added by pep.audit.api).

    GET /audit/v1/overview   requests/denials/errors/tokens/cost per day or hour, by team,
                             model and decision, top users, recent denials, last checkpoint
    GET /audit/v1/person     one user (user= required): who, totals, models, denials
    GET /audit/v1/bundle     one user's records + signed checkpoint + Merkle proof
                             (pep.audit.bundle; ``regogate audit verify --bundle`` checks it)
    GET /audit/v1/export.csv | export.jsonl | export.ocsf.jsonl
                             exactly the records the same filters list, streamed

Each one is authorised (``audit.read`` with its endpoint and filters) and audited first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from pep.audit.apicommon import (
    FILTERS,
    authorize_and_record,
    json_response,
    params_of,
    parse,
    reader_of,
    reading,
    resolve_user,
    witness_checkpoints,
)
from pep.audit.bundle import BundleError, build_bundle
from pep.audit.export import csv_header, csv_line, ocsf_event
from pep.audit.overview_sql import BUCKETS
from pep.audit.query import AuditQuery
from pep.audit.records import StoredRecord
from pep.errors import BadRequest, NotFound

TOP = 10


def denial(rec: StoredRecord) -> dict[str, Any]:
    doc = rec.doc()
    who, what = doc.get("who") or {}, doc.get("what") or {}
    return {"seq": rec.seq, "time": doc.get("time"), "request_id": doc.get("request_id"),
            "subject": who.get("subject"), "email": who.get("email"), "api": what.get("api"),
            "model": what.get("model_requested"),
            "reasons": (doc.get("decision") or {}).get("reasons") or []}


async def _denials(q: AuditQuery, request: web.Request, n: int) -> list[dict[str, Any]]:
    if q.decision not in (None, "deny"):
        return []
    recs = await reader_of(request).query(dataclasses.replace(q, decision="deny", order="desc",
                                                              limit=n))
    return [denial(r) for r in recs]


def _age_s(time: Any) -> float | None:
    try:
        then = datetime.fromisoformat(str(time))
    except ValueError:
        return None
    return round((datetime.now(UTC) - then).total_seconds(), 1)


async def overview_handler(request: web.Request) -> web.Response:
    params = params_of(request, (*FILTERS, "bucket"))
    bucket = params.pop("bucket", "day")
    if bucket not in BUCKETS:
        raise BadRequest("bucket must be day or hour", param="bucket", code="invalid_filter")
    q = parse(params)
    await authorize_and_record(request, "overview", {**params, "bucket": bucket})
    q = await resolve_user(request, q)
    reader = reader_of(request)
    async with reading():
        summary = await reader.summary(q, bucket)
        recent = await _denials(q, request, TOP)
        checkpoints = await reader.checkpoints()
    last = checkpoints[-1].payload if checkpoints else None
    users = summary.pop("by_user")
    t = summary.pop("totals")
    return json_response({
        "object": "audit.overview", "bucket": bucket, "filters": q.filters(),
        "totals": {"requests": t["requests"], "denied": t["denied"],
                   "errors": t["errors"] + t["rejected"],
                   "tokens": t["tokens_in"] + t["tokens_out"], "cost_usd": t["cost_usd"]},
        **summary, "top_users": users[:TOP], "users": len(users), "recent_denials": recent,
        "trail": {"checkpoints": len(checkpoints), "last_checkpoint": None if last is None else {
            "seq": last.get("seq"), "time": last.get("time"), "kind": last.get("kind"),
            "age_s": _age_s(last.get("time"))}},
    })


async def person_handler(request: web.Request) -> web.Response:
    params = params_of(request, ("user", "since", "until"))
    if "user" not in params:
        raise BadRequest("user is required (subject or e-mail)", param="user")
    q = parse(params)
    await authorize_and_record(request, "person", params)
    q = await resolve_user(request, q)
    reader = reader_of(request)
    async with reading():
        latest = await reader.query(dataclasses.replace(q, order="desc", limit=1))
        summary = await reader.summary(q, "day")
        denials = await _denials(q, request, 50)
    who = (latest[0].doc().get("who") or {}) if latest else {}
    return json_response({
        "object": "audit.person", "user": params["user"], "found": bool(latest),
        "subjects": list(q.subjects or ()),
        "who": {k: who.get(k) for k in ("subject", "email", "name", "issuer", "groups", "teams",
                                         "client_id", "kind")},
        "last_seen": latest[0].index.get("time") if latest else None,
        "totals": summary["totals"], "models": summary["by_model"], "days": summary["series"],
        "denials": denials,
    })


async def bundle_handler(request: web.Request) -> web.Response:
    params = params_of(request, ("user",))
    if "user" not in params:
        raise BadRequest("user is required (subject or e-mail)", param="user")
    await authorize_and_record(request, "bundle", params)
    async with reading():
        try:
            bundle = await build_bundle(reader_of(request), params["user"],
                                        witness_checkpoints(request))
        except BundleError as exc:
            raise NotFound(str(exc), code="bundle_unavailable") from exc
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in params["user"])[:64]
    return json_response(bundle, {
        "Content-Disposition": f'attachment; filename="regogate-evidence-{name}.json"'})


def _jsonl(rec: StoredRecord) -> str:
    return orjson.dumps(rec.export()).decode() + "\n"


def _ocsf(rec: StoredRecord) -> str:
    return orjson.dumps(ocsf_event(rec)).decode() + "\n"


_EXPORTS: dict[str, tuple[str, str, Callable[[StoredRecord], str], str]] = {
    "csv": ("text/csv; charset=utf-8", "csv", csv_line, csv_header()),
    "jsonl": ("application/x-ndjson", "jsonl", _jsonl, ""),
    "ocsf.jsonl": ("application/x-ndjson", "ocsf.jsonl", _ocsf, ""),
}


def _export_handler(fmt: str) -> Callable[[web.Request], Any]:
    content_type, ext, line, header = _EXPORTS[fmt]

    async def handler(request: web.Request) -> web.StreamResponse:
        params = params_of(request, FILTERS)
        q = parse(params)
        await authorize_and_record(request, f"export.{fmt}", params)
        q = await resolve_user(request, q)
        records = reader_of(request).matching(q)
        async with reading():
            first = await anext(records, None)  # fail with 503 before headers are sent
        resp = web.StreamResponse(headers={
            "Content-Type": content_type,
            "Content-Disposition": f'attachment; filename="regogate-audit.{ext}"',
            "Cache-Control": "no-store",
        })
        await resp.prepare(request)
        if header:
            await resp.write(header.encode())
        if first is not None:
            await resp.write(line(first).encode())
            # A store failure mid-stream cannot become a 503 any more: the connection is cut,
            # so a truncated file never looks complete.
            async for rec in records:
                await resp.write(line(rec).encode())
        await resp.write_eof()
        return resp

    return handler


def setup_view_routes(app: web.Application) -> None:
    app.router.add_get("/audit/v1/overview", overview_handler)
    app.router.add_get("/audit/v1/person", person_handler)
    app.router.add_get("/audit/v1/bundle", bundle_handler)
    for fmt in _EXPORTS:
        app.router.add_get(f"/audit/v1/export.{fmt}", _export_handler(fmt))
