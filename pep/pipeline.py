"""The request path (GUIDE.md section 1).

    authenticate -> parse + normalise -> inspect content -> usage snapshot -> PolicyInput
    -> decide (deny: 403/429 + audit; error: 503 + audit)
    -> obligations -> durable audit intent -> router -> response/stream -> audit completion

Every exit writes exactly one terminal audit record for the request. The provider is never
called unless the intent record is durable (GUIDE.md 3.8).
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.audit.events import AuditUnavailable
from pep.auditing import event
from pep.errors import (
    BadRequest,
    GatewayError,
    PolicyDenied,
    RateLimited,
    Unavailable,
    UnsupportedMedia,
)
from pep.exchange import Exchange
from pep.inbound import Dialect
from pep.obligations import apply_obligations
from pep.policy.contract import Decision
from pep.policy.engine import PolicyError
from pep.policy.input import build_policy_input
from pep.principal import Principal
from pep.request import NormalizedRequest, normalize_chat, normalize_embeddings
from pep.streaming import relay_stream
from pep.usage.tracker import UsageUnavailable

log = logging.getLogger("regogate.pipeline")
POLICY_INPUT = web.RequestKey("policy_input", dict)

EXCHANGE = web.RequestKey("exchange", Exchange)


def new_request_id(request: web.Request) -> str:
    settings = request.app[appkeys.SETTINGS].server
    if settings.trust_client_request_id:
        supplied = request.headers.get(settings.request_id_header, "")
        if 8 <= len(supplied) <= 64 and all(c.isalnum() or c in "-_." for c in supplied):
            return supplied
    return "req_" + secrets.token_hex(12)


def exchange_for(request: web.Request) -> Exchange:
    x: Exchange | None = request.get(EXCHANGE)
    if x is None:
        x = Exchange(
            request_id=new_request_id(request),
            method=request.method,
            path=request.path,
            source_ip=request.remote,
        )
        request[EXCHANGE] = x
    return x


async def audit(request: web.Request, ev: Any, *, required: bool) -> None:
    """Append an audit event. ``required``: failure refuses the request (503); otherwise a
    failure is logged and counted (the request is already being refused for another reason)."""
    metrics = request.app[appkeys.METRICS]
    try:
        await request.app[appkeys.AUDIT].append(ev)
    except AuditUnavailable as exc:
        metrics.inc("audit_write_failures_total")
        log.error("audit store could not record %s for %s: %s", ev["event"], ev["request_id"], exc)
        if required:
            raise Unavailable(
                "the audit store cannot record this request; nothing was forwarded",
                code="audit_unavailable",
            ) from exc


async def authenticate(request: web.Request, x: Exchange) -> Principal:
    try:
        principal: Principal = await request.app[appkeys.AUTHENTICATOR].authenticate(
            request.headers
        )
    except GatewayError as err:
        request.app[appkeys.METRICS].inc("auth_failures_total", code=err.code)
        await audit(request, event("auth.failure", x, error=err, extra={"code": err.code}),
                    required=False)
        raise
    x.principal = principal
    return principal


async def read_json(request: web.Request) -> Any:
    ctype = request.content_type
    if ctype != "application/json":
        raise UnsupportedMedia(
            f"Content-Type must be application/json, got {ctype or 'none'!r}"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        from pep.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"request body exceeds {request.app[appkeys.SETTINGS].server.limits.max_body_bytes} bytes"
        ) from exc
    if not raw:
        raise BadRequest("request body is empty; a JSON object is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}", code="invalid_json") from exc


async def usage_snapshot(request: web.Request, principal: Principal) -> dict[str, Any]:
    app = request.app
    try:
        return await app[appkeys.USAGE].snapshot(principal, principal.client_id)
    except UsageUnavailable as exc:
        app[appkeys.METRICS].inc("usage_store_failures_total")
        if app[appkeys.SETTINGS].usage.on_store_error == "allow":
            log.warning("usage store unavailable, proceeding per usage.on_store_error=allow")
            return {"unavailable": True}
        raise Unavailable("usage counters are unavailable", code="usage_unavailable") from exc


async def decide(
    request: web.Request, x: Exchange, policy_input: dict[str, Any], *, audited: bool = True
) -> Decision:
    app = request.app
    engine = app[appkeys.POLICY]
    x.engine = engine.name
    try:
        decision = await engine.evaluate(policy_input)
    except PolicyError as exc:
        app[appkeys.METRICS].inc("policy_errors_total", code=exc.code)
        log.error("policy engine failed for %s: %s", x.request_id, exc)
        err = Unavailable(
            "the policy engine could not decide; nothing was forwarded",
            code="policy_unavailable",
            details={"cause": exc.code},
        )
        if audited:
            await audit(request, event("policy.error", x, error=err, extra={"cause": str(exc)}),
                        required=False)
        raise err from exc
    if decision.decision_id is None:
        decision = decision.model_copy(update={"decision_id": x.request_id})
    x.decision = decision
    shadow = app.get(appkeys.SHADOW)
    if shadow is not None:
        await _shadow(request, x, shadow, policy_input, decision)
    return decision


async def _shadow(
    request: web.Request, x: Exchange, shadow: Any, policy_input: dict[str, Any], enforced: Decision
) -> None:
    divergence = await shadow.compare(policy_input, enforced)
    if divergence:
        request.app[appkeys.METRICS].inc("shadow_divergences_total")
        await audit(request, event("shadow.divergence", x, extra=divergence), required=False)


def denial(request: web.Request, x: Exchange, decision: Decision) -> GatewayError:
    app = request.app
    expose = app[appkeys.SETTINGS].server.expose_deny_reasons
    codes = [r.code for r in decision.reasons] or ["policy_denied"]
    quotas = [r.quota for r in decision.reasons if r.quota is not None]
    if expose == "codes":
        message = "; ".join(r.message or r.code for r in decision.reasons) or "denied by policy"
    else:
        message = "denied by policy"
    details: dict[str, Any] = {}
    if expose != "none":
        details = {"reasons": codes, "decision_id": decision.decision_id}
    if quotas:
        tracker = app[appkeys.USAGE]
        retry = max(tracker.retry_after(q) for q in quotas)
        app[appkeys.METRICS].inc("quota_denials_total")
        return RateLimited(message, retry_after=retry, code=codes[0], details=details)
    app[appkeys.METRICS].inc("policy_denials_total")
    return PolicyDenied(message, code=codes[0], details=details)


async def admit(
    request: web.Request, x: Exchange, req: NormalizedRequest, principal: Principal
) -> Decision:
    """Inspect, snapshot usage, decide; raise on deny. Shared by every model-calling API."""
    app = request.app
    inspector = app[appkeys.CONTENT]
    if inspector is not None:
        # One pass: normalise (NFKC, invisible characters stripped) and detect. The policy
        # sees the normalised texts, so finding offsets line up with request.messages[i].text.
        scan = inspector.scan(req.texts)
        req.texts, x.findings = scan.texts, scan.findings
    usage = await usage_snapshot(request, principal)
    policy_input = build_policy_input(
        principal,
        req,
        request_id=x.request_id,
        source_ip=x.source_ip,
        findings=x.findings,
        usage=usage,
        provider=app[appkeys.CATALOG].provider_kind(req.model),
    )
    request[POLICY_INPUT] = policy_input
    decision = await decide(request, x, policy_input)
    if not decision.allow:
        err = denial(request, x, decision)
        await audit(request, event("policy.deny", x, error=err), required=False)
        raise err
    return decision




async def forward(request: web.Request, dialect: Dialect, api: str) -> web.StreamResponse:
    """The whole path for chat completions, Anthropic messages and embeddings."""
    app = request.app
    x = exchange_for(request)
    principal = await authenticate(request, x)
    body = await read_json(request)
    if api == "embeddings":
        req = normalize_embeddings(body, normalise_text=_identity)
    else:
        canonical = dialect.to_canonical(body)
        req = normalize_chat(canonical, normalise_text=_identity, inbound_format=dialect.name,
                             api=api)
    x.req = req
    if not req.stream:
        return await _forward_admitted(request, dialect, api, principal, req)
    slots = app[appkeys.STREAM_SLOTS]
    if slots.locked():
        err = Unavailable("too many concurrent streams; retry shortly", code="too_many_streams")
        app[appkeys.METRICS].inc("stream_limit_rejections_total")
        await audit(request, event("request.error", x, error=err), required=False)
        raise err
    async with slots:
        return await _forward_admitted(request, dialect, api, principal, req)


async def _forward_admitted(
    request: web.Request, dialect: Dialect, api: str, principal: Principal, req: NormalizedRequest
) -> web.StreamResponse:
    app = request.app
    x = exchange_for(request)
    inspector = app[appkeys.CONTENT]
    router = app[appkeys.ROUTER]
    catalog = app[appkeys.CATALOG]
    catalog.check(req.model, embeddings=api == "embeddings")
    decision = await admit(request, x, req, principal)
    try:
        out_body, model, x.prompt_audit = apply_obligations(
            decision,
            req,
            configured_models=catalog.names_set,
            redactor=inspector,
            finding_types={f.type for f in x.findings},
        )
    except PolicyError as exc:
        err = Unavailable(str(exc), code="policy_unavailable", details={"cause": exc.code})
        await audit(request, event("policy.error", x, error=err), required=False)
        raise err from exc
    x.model_served = model
    await audit(request, event("request.intent", x), required=True)
    try:
        if api == "embeddings":
            result = await router.embeddings(out_body, model, request_id=x.request_id)
        else:
            result = await router.chat(out_body, model, request_id=x.request_id)
    except GatewayError as err:
        x.served = getattr(err, "served", None)
        app[appkeys.METRICS].inc("upstream_errors_total", code=err.code)
        await audit(request, event("upstream.error", x, error=err), required=False)
        raise
    x.served = result.served
    if hasattr(result, "body"):
        return await _complete_plain(request, x, dialect, result, api)
    return await relay_stream(request, x, dialect, result)


async def _complete_plain(
    request: web.Request, x: Exchange, dialect: Dialect, result: Any, api: str
) -> web.StreamResponse:
    from pep.output import check_output_plain

    body = result.body
    x.usage = result.usage
    if api != "embeddings":
        body = await check_output_plain(request, x, body)
    await record_usage(request, x)
    rendered = dialect.render(body) if api != "embeddings" else body
    response_audit = _response_content(x, body, api)
    await audit(request, event("request.completion", x, status=200,
                               response_content=response_audit), required=False)
    return web.Response(body=orjson.dumps(rendered), content_type="application/json")


def _response_content(x: Exchange, body: dict[str, Any], api: str) -> Any:
    from pep.auditing import content_mode

    if content_mode(x) == "none" or api == "embeddings":
        return None
    return [c.get("message", {}).get("content") for c in body.get("choices", [])]


async def record_usage(request: web.Request, x: Exchange) -> None:
    u = x.usage
    p = x.principal
    if u is None or p is None:
        return
    try:
        x.cost_usd = await request.app[appkeys.USAGE].record(
            p, p.client_id, x.model_served or "", u.prompt_tokens, u.completion_tokens,
            estimated=u.estimated,
        )
    except UsageUnavailable as exc:
        # The answer was already served; keep its cost in the audit record even so.
        x.cost_usd = getattr(exc, "cost_usd", None)
        request.app[appkeys.METRICS].inc("usage_store_failures_total")
        log.error("could not record usage for %s: %s", x.request_id, exc)


def _identity(text: str) -> str:
    return text
