"""Turn an Exchange into audit events (schema v1, pep/audit/events.py).

Events are built as plain dicts in the JSON form the store hashes (None values omitted):
this runs twice per request, and constructing and dumping the pydantic ``AuditEvent`` cost
more than the rest of the audit path. ``AuditEvent`` stays the schema; the tests in
tests/e2e/test_audit_events.py validate every kind of event this module builds against it.

Content is recorded as the ``audit_content`` obligation says: ``none`` (nothing), ``digest``
(sha256 of the canonical JSON, the default), ``redacted`` (after redaction obligations), or
``full``. Tokens, provider keys and headers are never recorded.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pep.audit.events import AUDIT_SCHEMA_VERSION, EventType
from pep.errors import GatewayError
from pep.exchange import Exchange
from pep.policy.contract import Decision
from pep.timestamps import now_rfc3339

Event = dict[str, Any]


def sha256_json(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


class _Memo:
    """A bounded map, oldest entry out (the memos below: at most ``size`` entries each)."""

    __slots__ = ("entries", "size")

    def __init__(self, size: int) -> None:
        self.entries: dict[Any, Any] = {}
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        if len(self.entries) >= self.size:
            del self.entries[next(iter(self.entries))]
        self.entries[key] = value


# The digest of a short canonical JSON document, by its bytes: a pure function, so a hit
# is the digest a computation would give. Request parameters repeat across requests (most
# are {} or a temperature) and every request digests them twice (intent and completion);
# the hash object and its hex cost ~4x the encoding. Longer documents are not kept.
_DIGESTS = _Memo(256)
_DIGEST_KEY_MAX = 256


def _params_digest(params: Any) -> str:
    raw = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    if len(raw) > _DIGEST_KEY_MAX:
        return hashlib.sha256(raw).hexdigest()
    digest: str | None = _DIGESTS.entries.get(raw)
    if digest is None:
        digest = hashlib.sha256(raw).hexdigest()
        _DIGESTS.put(raw, digest)
    return digest


# The JSON form of a decision's reasons and obligations, by the identity of the objects:
# the embedded engine's decision memo (pep/policy/validated.py) hands every request with
# the same decision document the same nested objects, and nothing on the request path
# changes a decision in place (every change is a ``model_copy``), so the dump of an object
# is the dump it had when it was first made. An entry holds its objects, so their ids
# cannot be reused while it is here.
_DECISION_PARTS = _Memo(256)


def _compact(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if v is not None}


def _part(x: Exchange, name: str, source: Any, build: Any) -> Any:
    """Built once per request: an intent and its completion repeat who and the decision.
    Keyed on the identity of what it is built from (a principal and a
    decision are never changed in place; a changed one is a new object, so it is rebuilt)."""
    hit = x.audit_parts.get(name)
    if hit is not None and hit[0] is source:
        return hit[1]
    value = build(x)
    x.audit_parts[name] = (source, value)
    return value


def _who(x: Exchange) -> dict[str, Any]:
    return _part(x, "who", x.principal, _build_who)  # type: ignore[no-any-return]


def _build_who(x: Exchange) -> dict[str, Any]:
    p = x.principal
    if p is None:
        return _compact({"source_ip": x.source_ip, "groups": [], "teams": []})
    return _compact({
        "subject": p.sub,
        "issuer": p.issuer,
        "email": p.email,
        "name": p.name,
        "kind": p.kind,
        "groups": list(p.groups),
        "teams": list(p.teams),
        "client_id": p.client_id,
        "actor": p.actor,
        "source_ip": x.source_ip,
    })


def _what(x: Exchange) -> dict[str, Any]:
    r = x.req
    served = x.served
    return _compact({
        "api": r.api if r else None,
        "method": x.method,
        "path": x.path,
        "model_requested": r.model if r else None,
        "model_served": x.model_served,
        "provider": served.provider if served else None,
        "deployment": f"{served.provider}/{served.model}" if served else None,
        "stream": r.stream if r else None,
        "params_digest": _params_digest(r.params) if r else None,
        "response_id": x.response_id,
    })


def _decision(x: Exchange) -> dict[str, Any] | None:
    if x.decision is None:
        return None
    # The engine is named before the decision is made, so the decision object decides.
    return _part(x, "decision", x.decision, _build_decision)  # type: ignore[no-any-return]


def _build_decision(x: Exchange) -> dict[str, Any]:
    d = x.decision
    assert d is not None
    reasons, obligations = _decision_parts(d)
    return _compact({
        "allow": d.allow,
        "reasons": reasons,
        "obligations": obligations,
        "policy_revision": d.policy_revision,
        "engine": x.engine,
        "engine_decision_id": d.engine_decision_id,
    })


def _decision_parts(d: Decision) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    key = (id(d.reasons), id(d.obligations))
    hit = _DECISION_PARTS.entries.get(key)
    if hit is not None and hit[0] is d.reasons and hit[1] is d.obligations:
        return hit[2], hit[3]
    reasons = [r.model_dump(exclude_none=True) for r in d.reasons]
    obligations = d.obligations.model_dump(exclude_none=True)
    _DECISION_PARTS.put(key, (d.reasons, d.obligations, reasons, obligations))
    return reasons, obligations


def content_mode(x: Exchange) -> str:
    d = x.decision
    mode = d.obligations.audit_content if d is not None else None
    return mode or "digest"


def content_record(x: Exchange, response: Any = None) -> dict[str, Any] | None:
    mode = content_mode(x)
    if x.prompt_audit is None and response is None:
        return None
    if mode == "none":
        return {"mode": "none"}
    if mode == "digest":
        return _compact({
            "mode": "digest",
            "prompt_sha256": sha256_json(x.prompt_audit) if x.prompt_audit is not None else None,
            "response_sha256": sha256_json(response) if response is not None else None,
        })
    return _compact({"mode": mode, "prompt": x.prompt_audit, "response": response})


def _outcome(x: Exchange, status: int | None, error: GatewayError | None) -> dict[str, Any]:
    u = x.usage
    return _compact({
        "status": status if status is not None else (error.status if error else None),
        "error_code": error.code if error else None,
        "error_message": error.message if error else None,
        "tokens_in": u.prompt_tokens if u else None,
        "tokens_out": u.completion_tokens if u else None,
        "tokens_estimated": u.estimated if u else None,
        "cost_usd": x.cost_usd,
        "latency_ms": x.latency_ms(),
    })


def event(
    kind: EventType,
    x: Exchange,
    *,
    status: int | None = None,
    error: GatewayError | None = None,
    response_content: Any = None,
    extra: dict[str, Any] | None = None,
) -> Event:
    doc: Event = {
        "schema_version": AUDIT_SCHEMA_VERSION,
        "event": kind,
        "time": now_rfc3339(),
        "request_id": x.request_id,
        "who": _who(x),
        "what": _what(x),
        "extra": extra or {},
    }
    if x.trace_id is not None:  # joins the record to its OpenTelemetry trace
        doc["trace_id"] = x.trace_id
    if x.cache is not None:
        cache = x.cache
        if kind == "request.completion" and cache.get("hit") and x.cost_usd is not None:
            cache = {**cache, "saved_cost_usd": x.cost_usd}  # the provider was not paid
        doc["extra"] = {**doc["extra"], "cache": cache}
    if x.findings:  # content findings by type, for the auditor: counts only, never the text
        counts: dict[str, int] = {}
        for f in x.findings:
            counts[f.type] = counts.get(f.type, 0) + 1
        doc["extra"] = {**doc["extra"], "findings": counts}
    if x.mcp is not None:
        doc["extra"] = {**doc["extra"], "mcp": x.mcp}
    if x.decision is not None:
        doc["decision_id"] = x.decision.decision_id
        doc["decision"] = _decision(x)
    if status is not None or error is not None:
        doc["outcome"] = _outcome(x, status, error)
    if kind != "auth.failure":
        content = content_record(x, response_content)
        if content is not None:
            doc["content"] = content
    return doc


# A refused request's record is evidence, not a copy of the attack: client-chosen strings
# (a model name, a Content-Type) are cut to this many characters.
_REJECTION_TEXT_MAX = 256


def rejection_event(kind: EventType, x: Exchange, err: GatewayError) -> Event:
    """``request.rejected`` (4xx) / ``request.error`` (5xx) for a request refused before or
    outside the decision: reason code, status, path, subject if known and body sizes; never
    the body, a header or a token."""
    extra: dict[str, Any] = {"reason": err.code}
    if err.param is not None:
        extra["param"] = err.param[:_REJECTION_TEXT_MAX]
    sizes = x.body
    if sizes is not None:
        extra.update(_compact({"content_length": sizes.declared, "body_bytes": sizes.wire,
                               "decoded_bytes": sizes.decoded}))
    doc = event(kind, x, error=err, extra=extra)
    outcome = doc["outcome"]
    outcome["error_message"] = outcome.get("error_message", "")[:_REJECTION_TEXT_MAX]
    model = doc["what"].get("model_requested")
    if isinstance(model, str) and len(model) > _REJECTION_TEXT_MAX:
        doc["what"]["model_requested"] = model[:_REJECTION_TEXT_MAX]
    return doc
