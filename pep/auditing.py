"""Turn an Exchange into audit events (schema v1, pep/audit/events.py).

Content is recorded as the ``audit_content`` obligation says: ``none`` (nothing), ``digest``
(sha256 of the canonical JSON, the default), ``redacted`` (after redaction obligations), or
``full``. Tokens, provider keys and headers are never recorded.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

import orjson

from pep.audit.events import (
    AuditEvent,
    ContentRecord,
    DecisionRecord,
    EventType,
    Outcome,
    What,
    Who,
)
from pep.errors import GatewayError
from pep.exchange import Exchange


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def sha256_json(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _who(x: Exchange) -> Who:
    p = x.principal
    if p is None:
        return Who(source_ip=x.source_ip)
    return Who(
        subject=p.sub,
        issuer=p.issuer,
        email=p.email,
        name=p.name,
        kind=p.kind,
        groups=list(p.groups),
        teams=list(p.teams),
        client_id=p.client_id,
        actor=p.actor,
        source_ip=x.source_ip,
    )


def _what(x: Exchange) -> What:
    r = x.req
    served = x.served
    return What(
        api=r.api if r else None,
        method=x.method,
        path=x.path,
        model_requested=r.model if r else None,
        model_served=x.model_served,
        provider=served.provider if served else None,
        deployment=f"{served.provider}/{served.model}" if served else None,
        stream=r.stream if r else None,
        params_digest=sha256_json(r.params) if r else None,
    )


def _decision(x: Exchange) -> DecisionRecord | None:
    d = x.decision
    if d is None:
        return None
    return DecisionRecord(
        allow=d.allow,
        reasons=[r.model_dump(exclude_none=True) for r in d.reasons],
        obligations=d.obligations.model_dump(exclude_none=True),
        policy_revision=d.policy_revision,
        engine=x.engine,
    )


def content_mode(x: Exchange) -> str:
    d = x.decision
    mode = d.obligations.audit_content if d is not None else None
    return mode or "digest"


def content_record(x: Exchange, response: Any = None) -> ContentRecord | None:
    mode = content_mode(x)
    if x.prompt_audit is None and response is None:
        return None
    if mode == "none":
        return ContentRecord(mode="none")
    if mode == "digest":
        return ContentRecord(
            mode="digest",
            prompt_sha256=sha256_json(x.prompt_audit) if x.prompt_audit is not None else None,
            response_sha256=sha256_json(response) if response is not None else None,
        )
    return ContentRecord(mode=mode, prompt=x.prompt_audit, response=response)  # type: ignore[arg-type]


def event(
    kind: EventType,
    x: Exchange,
    *,
    status: int | None = None,
    error: GatewayError | None = None,
    response_content: Any = None,
    extra: dict[str, Any] | None = None,
) -> AuditEvent:
    outcome = None
    if status is not None or error is not None:
        u = x.usage
        outcome = Outcome(
            status=status if status is not None else (error.status if error else None),
            error_code=error.code if error else None,
            error_message=error.message if error else None,
            tokens_in=u.prompt_tokens if u else None,
            tokens_out=u.completion_tokens if u else None,
            tokens_estimated=u.estimated if u else None,
            cost_usd=x.cost_usd,
            latency_ms=x.latency_ms(),
        )
    return AuditEvent(
        event=kind,
        time=now_rfc3339(),
        request_id=x.request_id,
        decision_id=x.decision.decision_id if x.decision else None,
        who=_who(x),
        what=_what(x),
        decision=_decision(x),
        outcome=outcome,
        content=content_record(x, response_content) if kind != "auth.failure" else None,
        extra=extra or {},
    )
