"""Read-only auditor HTTP API and web view.

    GET /audit/                  the web page (static HTML + JS; sign-in: pep/workspace)
    GET /audit/v1/events         records, newest first (filters: user, team, model, decision,
                                 event, request_id, since, until, limit, order)
    GET /audit/v1/verify         chain + checkpoint verification report (since, until)
    GET /audit/v1/report         per user|team|model and day (by=..., filters)
    GET /audit/v1/export.csv     CSV of the matching records (filters)

Every API call is authorised like a model call: bearer token (or a workspace session's, with
its CSRF token: pep/workspace/routes.py) -> policy with
``request.api = "audit.read"`` and ``request.params = {"endpoint": ..., <filters>}`` (so a
policy can, say, let team leads read only their team). The read itself is then written to the
trail as an ``audit.read`` record *before* any data is returned; if that record cannot be made
durable the read is refused (503), like a model call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.audit.checkpoints import (
    DEFAULT_PUBLIC_KEY_NAME,
    SigningKeyError,
    load_public_key,
    read_witness,
)
from pep.audit.events import AuditUnavailable
from pep.audit.export import REPORT_GROUPS, csv_header, csv_line
from pep.audit.factory import store_url, witness_dir
from pep.audit.query import AuditQuery, QueryError
from pep.audit.reader import AuditReader, open_reader
from pep.audit.verify import verify_trail
from pep.errors import BadRequest, Unavailable
from pep.principal import Principal
from pep.workspace.routes import session_credentials, setup_workspace_routes

Authorize = Callable[..., Awaitable[Principal]]
AUTHORIZE: web.AppKey[Authorize] = web.AppKey("audit_authorize")
READER: web.AppKey[AuditReader] = web.AppKey("audit_reader")

WEB_DIR = Path(__file__).resolve().parent / "web"
_FILTERS = ("user", "team", "model", "api", "decision", "event", "request_id", "since",
            "until")
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


def _params(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    q = request.query
    for key in q:
        if key not in allowed:
            raise BadRequest(f"unknown query parameter {key!r}", param=key)
        if len(q.getall(key)) > 1:
            raise BadRequest(f"query parameter {key!r} given more than once", param=key)
        if len(q[key]) > 256:
            raise BadRequest(f"query parameter {key!r} is too long", param=key)
    return {k: q[k] for k in q if q[k] != ""}


def _parse(params: dict[str, str], **defaults: Any) -> AuditQuery:
    try:
        return AuditQuery.from_params({**defaults, **params})
    except QueryError as exc:
        raise BadRequest(str(exc), code="invalid_filter") from exc


async def _authorize_and_record(request: web.Request, endpoint: str, params: dict[str, str]) -> None:
    from pep.access import authorize as default_authorize

    authorize = request.app.get(AUTHORIZE) or default_authorize
    # A workspace session (cookie + CSRF token) or, for CLI/API clients, a bearer token:
    # either way the same Principal, the same policy question, the same record.
    credentials = await session_credentials(request)
    await authorize(request, api="audit.read", params={"endpoint": endpoint, **params},
                    credentials=credentials)
    from pep.auditing import event
    from pep.steps import audit, exchange_for

    x = exchange_for(request)
    await audit(request, event("audit.read", x, status=200,
                               extra={"endpoint": endpoint, "filters": params}), required=True)


def _reader(request: web.Request) -> AuditReader:
    return request.app[READER]


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def events_handler(request: web.Request) -> web.Response:
    params = _params(request, (*_FILTERS, "limit", "order"))
    q = _parse(params, limit="200", order="desc")
    await _authorize_and_record(request, "events", params)
    try:
        records = await _reader(request).query(q)
    except AuditUnavailable as exc:
        raise Unavailable("the audit trail cannot be read", code="audit_unavailable") from exc
    return _json({"object": "list", "data": [r.export() for r in records],
                  "count": len(records), "filters": q.as_params()})


async def verify_handler(request: web.Request) -> web.Response:
    params = _params(request, ("since", "until"))
    q = _parse(params)
    await _authorize_and_record(request, "verify", params)
    settings = request.app[appkeys.SETTINGS]
    audit = settings.audit
    keys = []
    for path in (audit.signing_key, settings.server.data_dir / DEFAULT_PUBLIC_KEY_NAME):
        if path is not None and Path(path).exists():
            try:
                keys.append(load_public_key(Path(path)))
            except SigningKeyError:
                continue
            break
    extra = []
    for path in (witness_dir(audit, settings.server.data_dir), audit.witness_log):
        if path is not None and path.exists():
            extra.extend(read_witness(path))
    try:
        report = await verify_trail(_reader(request), public_keys=keys, extra_checkpoints=extra,
                                    since=q.since, until=q.until)
    except AuditUnavailable as exc:
        raise Unavailable("the audit trail cannot be read", code="audit_unavailable") from exc
    bus = request.app.get(appkeys.EVENTS)
    if bus is not None and not report.valid and report.error is not None:
        brk = report.error
        bus.emit("audit.integrity_failed", None,
                 {"kind": brk.kind, "chain": brk.chain, "seq": brk.seq, "message": brk.message})
    return _json(report.to_dict())


async def report_handler(request: web.Request) -> web.Response:
    params = _params(request, (*_FILTERS, "by"))
    by = params.pop("by", "user")
    if by not in REPORT_GROUPS:
        raise BadRequest(f"by must be one of {', '.join(REPORT_GROUPS)}", param="by")
    q = _parse(params)
    await _authorize_and_record(request, "report", {**params, "by": by})
    try:
        rows = await _reader(request).report(q, by)
    except AuditUnavailable as exc:
        raise Unavailable("the audit trail cannot be read", code="audit_unavailable") from exc
    return _json({"object": "list", "by": by, "data": rows})


async def export_csv_handler(request: web.Request) -> web.StreamResponse:
    params = _params(request, _FILTERS)
    q = _parse(params)
    await _authorize_and_record(request, "export.csv", params)
    records = _reader(request).matching(q)
    try:
        first = await anext(records, None)  # fail with 503 before headers are sent
    except AuditUnavailable as exc:
        raise Unavailable("the audit trail cannot be read", code="audit_unavailable") from exc
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": 'attachment; filename="regogate-audit.csv"',
        "Cache-Control": "no-store",
    })
    await resp.prepare(request)
    await resp.write(csv_header().encode())
    if first is not None:
        await resp.write(csv_line(first).encode())
        async for rec in records:
            await resp.write(csv_line(rec).encode())
    await resp.write_eof()
    return resp


async def page_handler(request: web.Request) -> web.Response:
    name = request.match_info.get("name") or "index.html"
    types = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css",
             "session.js": "text/javascript"}
    if name not in types:
        raise web.HTTPNotFound()
    return web.Response(body=(WEB_DIR / name).read_bytes(), content_type=types[name],
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
    setup_workspace_routes(app)  # before /audit/{name}: /audit/login is not a file
    app.router.add_get("/audit/v1/events", events_handler)
    app.router.add_get("/audit/v1/verify", verify_handler)
    app.router.add_get("/audit/v1/report", report_handler)
    app.router.add_get("/audit/v1/export.csv", export_csv_handler)
    app.router.add_get("/audit/", page_handler)
    app.router.add_get("/audit/{name}", page_handler)
    app.router.add_get("/audit", _redirect)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/audit/")
