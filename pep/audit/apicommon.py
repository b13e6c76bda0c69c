"""What every auditor endpoint shares: strict query parsing, the policy check plus the
``audit.read`` record written before any data leaves, and store failures as 503s."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.audit.checkpoints import Checkpoint, read_witness
from pep.audit.events import AuditUnavailable
from pep.audit.factory import witness_dir
from pep.audit.query import AuditQuery, QueryError
from pep.audit.reader import AuditReader
from pep.errors import BadRequest, Unavailable
from pep.principal import Principal

Authorize = Callable[..., Awaitable[Principal]]
AUTHORIZE: web.AppKey[Authorize] = web.AppKey("audit_authorize")
READER: web.AppKey[AuditReader] = web.AppKey("audit_reader")

FILTERS = ("user", "team", "model", "decision", "event", "request_id", "since", "until",
           "reason", "api", "reads")


def params_of(request: web.Request, allowed: tuple[str, ...]) -> dict[str, str]:
    q = request.query
    for key in q:
        if key not in allowed:
            raise BadRequest(f"unknown query parameter {key!r}", param=key)
        if len(q.getall(key)) > 1:
            raise BadRequest(f"query parameter {key!r} given more than once", param=key)
        if len(q[key]) > 256:
            raise BadRequest(f"query parameter {key!r} is too long", param=key)
    return {k: q[k] for k in q if q[k] != ""}


def parse(params: dict[str, str], **defaults: Any) -> AuditQuery:
    """Filters -> AuditQuery. ``reads`` (hide | show, default hide): the auditors' own
    successful ``audit.read`` records stay out of lists and exports unless asked for."""
    values: dict[str, Any] = {**defaults, **params}
    reads = values.pop("reads", "hide")
    if reads not in ("hide", "show"):
        raise BadRequest("reads must be hide or show", param="reads", code="invalid_filter")
    values["hide_reads"] = "1" if reads == "hide" else ""
    try:
        return AuditQuery.from_params(values)
    except QueryError as exc:
        raise BadRequest(str(exc), code="invalid_filter") from exc


async def resolve_user(request: web.Request, q: AuditQuery) -> AuditQuery:
    """``user`` (subject or e-mail) as the subjects it names: itself and every subject seen
    with that e-mail. Runs after the policy check, so it reveals nothing to a refused caller."""
    if not q.user:
        return q
    async with reading():
        others = await reader_of(request).subjects_with_email(q.user)
    return dataclasses.replace(q, subjects=tuple(dict.fromkeys([q.user, *others])))


async def authorize_and_record(request: web.Request, endpoint: str, params: dict[str, str]) -> None:
    from pep.access import authorize as default_authorize

    from pep.workspace.routes import session_credentials

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


def reader_of(request: web.Request) -> AuditReader:
    return request.app[READER]


@asynccontextmanager
async def reading() -> AsyncIterator[None]:
    try:
        yield
    except AuditUnavailable as exc:
        raise Unavailable("the audit trail cannot be read", code="audit_unavailable") from exc


def json_response(body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})


def witness_checkpoints(request: web.Request) -> list[Checkpoint]:
    settings = request.app[appkeys.SETTINGS]
    out: list[Checkpoint] = []
    for path in (witness_dir(settings.audit, settings.server.data_dir), settings.audit.witness_log):
        if path is not None and Path(path).exists():
            out.extend(read_witness(Path(path)))
    return out
