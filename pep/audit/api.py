"""Read-only auditor HTTP API and the auditor workspace (web page).

    GET /audit/                     the workspace (static HTML + JS modules; sign-in: pep/workspace)
    GET /audit/v1/events            records, newest first, one page at a time: filters (user,
                                    team, model, decision, event, reason, api, request_id, since,
                                    until, reads=hide|show), limit, order, cursor; answers with
                                    total, has_more and next_cursor (pep.audit.pages)
    GET /audit/v1/verify            chain + checkpoint verification report (since, until)
    GET /audit/v1/report            per user|team|model and day (by=..., filters)
    GET /audit/v1/overview          requests over time, by team/model/decision, top users,
                                    recent denials, last checkpoint (pep.audit.workspace)
    GET /audit/v1/person            one user's totals, models, teams and denials
    GET /audit/v1/bundle            one user's records with their completeness proof
    GET /audit/v1/export.csv|.jsonl|.ocsf.jsonl   exactly the filtered set, streamed

Every API call is authorised like a model call: bearer token (or a workspace session's, with
its CSRF token: pep/workspace/routes.py) -> policy with
``request.api = "audit.read"`` and ``request.params = {"endpoint": ..., <filters>}`` (so a
policy can, say, let team leads read only their team). The read itself is then written to the
trail as an ``audit.read`` record *before* any data is returned; if that record cannot be made
durable the read is refused (503), like a model call.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from pep import appkeys
from pep.audit.apicommon import (
    AUTHORIZE,
    FILTERS,
    READER,
    Authorize,
    authorize_and_record,
    json_response,
    params_of,
    parse,
    reader_of,
    reading,
    resolve_user,
    witness_checkpoints,
)
from pep.audit.checkpoints import DEFAULT_PUBLIC_KEY_NAME, SigningKeyError, load_public_key
from pep.audit.export import REPORT_GROUPS
from pep.audit.factory import store_url
from pep.audit.pages import apply_cursor, encode_cursor
from pep.audit.query import QueryError
from pep.audit.reader import open_reader
from pep.audit.verify import verify_trail
from pep.audit.workspace import setup_view_routes
from pep.errors import BadRequest
from pep.workspace.routes import setup_workspace_routes

__all__ = ["AUTHORIZE", "READER", "setup_audit_routes"]

WEB_DIR = Path(__file__).resolve().parent / "web"
DEFAULT_PAGE = "50"
_PAGE_HEADERS = {
    # No inline script, nothing from elsewhere, never framed, the token never leaves as Referer.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".txt": "text/plain",
          ".svg": "image/svg+xml"}
_STATIC = re.compile(r"(?:[A-Za-z0-9_-]+/){0,2}[A-Za-z0-9_.-]+")


async def events_handler(request: web.Request) -> web.Response:
    params = params_of(request, (*FILTERS, "limit", "order", "cursor"))
    cursor = params.pop("cursor", None)
    q = parse(params, limit=DEFAULT_PAGE, order="desc")
    try:
        positioned = apply_cursor(q, cursor)
    except QueryError as exc:
        raise BadRequest(str(exc), param="cursor", code="invalid_cursor") from exc
    await authorize_and_record(request, "events", {**params, **({"cursor": cursor} if cursor else {})})
    q = await resolve_user(request, q)
    positioned = dataclasses.replace(positioned, subjects=q.subjects)
    limit = q.limit or int(DEFAULT_PAGE)
    reader = reader_of(request)
    async with reading():
        records = await reader.query(dataclasses.replace(positioned, limit=limit + 1))
        total = await reader.count(q)
    has_more = len(records) > limit
    records = records[:limit]
    return json_response({
        "object": "list", "data": [r.export() for r in records], "count": len(records),
        "total": total, "has_more": has_more,
        "next_cursor": encode_cursor(q, records[-1].seq) if has_more else None,
        "filters": q.as_params()})


async def verify_handler(request: web.Request) -> web.Response:
    params = params_of(request, ("since", "until"))
    q = parse(params)
    await authorize_and_record(request, "verify", params)
    settings = request.app[appkeys.SETTINGS]
    keys = []
    for path in (settings.audit.signing_key, settings.server.data_dir / DEFAULT_PUBLIC_KEY_NAME):
        if path is not None and Path(path).exists():
            try:
                keys.append(load_public_key(Path(path)))
            except SigningKeyError:
                continue
            break
    # Its own reader: a full verification reads every record, and the shared reader's one
    # SQLite connection would hold every other auditor's page behind it meanwhile.
    reader = open_reader(store_url(settings.audit, settings.server.data_dir),
                         pg_schema=settings.audit.pg_schema)
    try:
        async with reading():
            report = await verify_trail(reader, public_keys=keys,
                                        extra_checkpoints=witness_checkpoints(request),
                                        since=q.since, until=q.until)
    finally:
        await reader.close()
    bus = request.app.get(appkeys.EVENTS)
    if bus is not None and not report.valid and report.error is not None:
        brk = report.error
        bus.emit("audit.integrity_failed", None,
                 {"kind": brk.kind, "chain": brk.chain, "seq": brk.seq, "message": brk.message})
    return json_response(report.to_dict())


async def report_handler(request: web.Request) -> web.Response:
    params = params_of(request, (*FILTERS, "by"))
    by = params.pop("by", "user")
    if by not in REPORT_GROUPS:
        raise BadRequest(f"by must be one of {', '.join(REPORT_GROUPS)}", param="by")
    q = parse(params)
    await authorize_and_record(request, "report", {**params, "by": by})
    q = await resolve_user(request, q)
    async with reading():
        rows = await reader_of(request).report(q, by)
    return json_response({"object": "list", "by": by, "data": rows})


async def page_handler(request: web.Request) -> web.Response:
    """The workspace's own files only: a fixed directory, no dot-dot, known types."""
    name = request.match_info.get("name") or "index.html"
    path = WEB_DIR / name
    if (not _STATIC.fullmatch(name) or ".." in name or path.suffix not in _TYPES
            or not path.is_file()):
        raise web.HTTPNotFound()
    return web.Response(body=path.read_bytes(), content_type=_TYPES[path.suffix],
                        charset="utf-8", headers=_PAGE_HEADERS)


def _reader_ctx(app: web.Application) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        reader = open_reader(store_url(settings.audit, settings.server.data_dir),
                             pg_schema=settings.audit.pg_schema)
        app[READER] = reader
        yield
        await reader.close()

    return ctx


def setup_audit_routes(app: web.Application, *, authorize: Authorize | None = None) -> None:
    """Add the auditor API and web view. ``authorize`` defaults to ``pep.access.authorize``.
    The reader opens lazily on first use (no work at start-up) and closes with the app."""
    if authorize is not None:
        app[AUTHORIZE] = authorize
    app.cleanup_ctx.append(_reader_ctx(app))
    app.router.add_get("/audit/v1/events", events_handler)
    app.router.add_get("/audit/v1/verify", verify_handler)
    app.router.add_get("/audit/v1/report", report_handler)
    setup_view_routes(app)
    setup_workspace_routes(app)  # before /audit/{name}: /audit/login is not a file
    app.router.add_get("/audit/", page_handler)
    app.router.add_get("/audit/{name:.+}", page_handler)
    app.router.add_get("/audit", _redirect)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/audit/")
