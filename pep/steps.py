"""The steps every gateway endpoint is built from: request identity, authentication,
reading the body, usage snapshot, deciding, denial shaping, quota reservation, auditing and
usage recording.

``pep.pipeline`` composes them into the model-calling path; ``pep.output``,
``pep.streaming``, ``pep.access`` and the auditor/usage APIs reuse them. This module imports
none of those, so the dependency graph has no cycles.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

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
    bearer_challenge,
)
from pep.exchange import Exchange
from pep.policy.contract import Decision, QuotaRef, Reason
from pep.policy.engine import PolicyError
from pep.principal import Principal
from pep.tracing import child
from pep.request import TOKEN_LIMIT_FIELDS
from pep.usage.admission import InvalidQuota, QuotaExceeded, message
from pep.usage.tracker import UsageUnavailable
from pep.workspace.cookie import has_credential_header, session_cookie

log = logging.getLogger("regogate.pipeline")
_NO_SPAN = contextlib.nullcontext()
POLICY_INPUT: web.RequestKey[dict[str, Any]] = web.RequestKey("policy_input", dict)

EXCHANGE = web.RequestKey("exchange", Exchange)
# The events that end a request's trail; each request gets exactly one (GUIDE.md 3.11).
TERMINAL_EVENTS = frozenset({
    "auth.failure", "request.rejected", "policy.deny", "policy.error", "request.completion",
    "request.error", "upstream.error", "audit.read", "cache.purge", "session.login",
    "session.logout",
})


def new_request_id(request: web.Request) -> str:
    settings = request.app[appkeys.SETTINGS].server
    if settings.trust_client_request_id:
        supplied = request.headers.get(settings.request_id_header, "")
        if 8 <= len(supplied) <= 64 and all(c.isalnum() or c in "-_." for c in supplied):
            return supplied
    return request.app[appkeys.REQUEST_IDS].next_id()


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


async def audit(request: web.Request, ev: Any, *, required: bool) -> bool:
    """Append an audit event; True once it is durable. ``required``: failure refuses the
    request (503); otherwise a failure is logged and counted (and False returned)."""
    metrics = request.app[appkeys.METRICS]
    if ev["event"] in TERMINAL_EVENTS:
        exchange_for(request).terminal_recorded = True
    t0 = time.perf_counter()
    try:
        x = request.get(EXCHANGE)
        with child(x, f"audit {ev['event']}") if x is not None else _NO_SPAN:
            await request.app[appkeys.AUDIT].append(ev)
        metrics.observe("audit_write_duration_seconds", time.perf_counter() - t0,
                        event=ev["event"])
    except AuditUnavailable as exc:
        metrics.inc("audit_write_failures_total")
        bus = request.app.get(appkeys.EVENTS)
        if bus is not None:
            bus.emit("audit.write_failed", None,
                     {"event": ev["event"], "request_id": ev["request_id"],
                      "required": required})
        log.error("audit store could not record %s for %s: %s", ev["event"], ev["request_id"], exc)
        if required:
            raise Unavailable(
                "the audit store cannot record this request; nothing was forwarded",
                code="audit_unavailable",
            ) from exc
        return False
    return True


def refuse_ambiguous_credentials(request: web.Request) -> None:
    """The workspace cookie beside a bearer token: 400, recorded as ``request.rejected``
    (pep/workspace/cookie.py says why). A cookie alone is simply not a credential."""
    headers = request.headers
    if "Cookie" in headers and has_credential_header(headers) \
            and session_cookie(headers) is not None:
        raise BadRequest(
            "the request carries both the workspace session cookie and a bearer token;"
            " the API takes bearer tokens only: send one credential",
            code="ambiguous_credentials", param="cookie")


async def authenticate(request: web.Request, x: Exchange,
                       credentials: Mapping[str, str] | None = None) -> Principal:
    """The request's bearer token -> Principal. ``credentials``: headers to authenticate
    instead of the request's (a workspace session's own token, pep/workspace/routes.py)."""
    if credentials is None:
        refuse_ambiguous_credentials(request)
    try:
        with child(x, "authenticate"):
            principal: Principal = await request.app[appkeys.AUTHENTICATOR].authenticate(
                request.headers if credentials is None else credentials
            )
    except GatewayError as err:
        request.app[appkeys.METRICS].inc("auth_failures_total", code=err.code)
        await audit(request, event("auth.failure", x, error=err, extra={"code": err.code}),
                    required=False)
        raise
    x.principal = principal
    return principal


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
    t0 = time.perf_counter()
    try:
        with child(x, "policy") as span:
            decision = await engine.evaluate(policy_input)
            if span is not None:
                span.set_attribute("regogate.policy.engine", engine.name)
                span.set_attribute("regogate.decision", "allow" if decision.allow else "deny")
    except PolicyError as exc:
        x.policy_s = time.perf_counter() - t0
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
    x.policy_s = time.perf_counter() - t0
    app[appkeys.METRICS].observe("policy_duration_seconds", x.policy_s, engine=engine.name)
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


async def over_quota(request: web.Request, x: Exchange, decision: Decision,
                     exc: QuotaExceeded) -> GatewayError:
    """A refused quota reservation (model calls and MCP tool calls alike): the effective
    decision becomes a denial with the reasons the policy would have given, audited as
    ``policy.deny`` at stage ``quota_reservation``; returns the error to raise."""
    reasons = [Reason(code=limit.code, message=message(limit, used),
                      quota=QuotaRef(scope=limit.scope, window=limit.window,
                                     metric=limit.metric))
               for limit, used in exc.failures]
    x.decision = decision.model_copy(update={"allow": False, "reasons": reasons})
    err = denial(request, x, x.decision)
    await audit(request, event("policy.deny", x, error=err,
                               extra={"stage": "quota_reservation"}), required=False)
    return err


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
    bus = app.get(appkeys.EVENTS)
    if bus is not None:
        p, r = x.principal, x.req
        bus.emit("quota.exceeded" if quotas else "policy.denied",
                 p.sub if p is not None else None,
                 {"request_id": x.request_id, "decision_id": decision.decision_id,
                  "reasons": codes, "issuer": p.issuer if p is not None else None,
                  "model": r.model if r is not None else None,
                  "policy_revision": decision.policy_revision})
    if quotas:
        tracker = app[appkeys.USAGE]
        retry = max(tracker.retry_after(q) for q in quotas)
        app[appkeys.METRICS].inc("quota_denials_total")
        return RateLimited(message, retry_after=retry, code=codes[0], details=details)
    app[appkeys.METRICS].inc("policy_denials_total")
    # RFC 6750 3.1: a token lacking the scope the request needs is answered 403 with an
    # insufficient_scope challenge; the policy signals it by that reason code.
    headers = ({"WWW-Authenticate": bearer_challenge("insufficient_scope", message)}
               if "insufficient_scope" in codes else None)
    return PolicyDenied(message, code=codes[0], details=details, headers=headers)


def _output_limits(body: dict[str, Any]) -> list[str]:
    """The output-token fields the body carries (a provider may honour any of them)."""
    return [f for f in TOKEN_LIMIT_FIELDS if body.get(f) is not None]


def _output_limit(body: dict[str, Any]) -> Any:
    """The largest output-token limit sent: what the provider may generate at most."""
    values = [body[f] for f in _output_limits(body) if isinstance(body[f], int)]
    return max(values) if values else None


async def reserve_usage(
    request: web.Request, x: Exchange, decision: Decision, body: dict[str, Any], model: str
) -> int | None:
    """The decisive quota check: the limits in the decision's ``quota`` obligation are
    checked, and this request's estimated usage reserved on every counter, in one atomic
    store operation (pep/usage/admission.py). Refused: the 429 the policy would have given,
    audited as a policy.deny. Called after the obligations (the cap is known), before the
    intent record; ``body`` gets the cap when a shrinking token limit lowered it, and that cap
    is returned (None when the forwarded max_tokens is unchanged)."""
    app = request.app
    req, p = x.req, x.principal
    assert req is not None and p is not None
    embeddings = req.api == "embeddings"
    out, choices = 0, 1
    if not embeddings:
        cap = _output_limit(body)
        out = cap if isinstance(cap, int) else app[appkeys.SETTINGS].usage.reserve_output_tokens
        n = body.get("n")
        choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    limits = decision.obligations.quota or ()
    try:
        x.reservation = await app[appkeys.USAGE].reserve(
            p, p.client_id, model, limits, prompt_tokens=req.estimated_tokens,
            output_tokens=out, choices=choices, shrinkable=not embeddings)
    except QuotaExceeded as exc:
        raise await over_quota(request, x, decision, exc) from None
    except InvalidQuota as exc:
        app[appkeys.METRICS].inc("policy_errors_total", code="policy_invalid")
        err = Unavailable(str(exc), code="policy_unavailable", details={"cause": "policy_invalid"})
        await audit(request, event("policy.error", x, error=err), required=False)
        raise err from exc
    except UsageUnavailable as exc:
        app[appkeys.METRICS].inc("usage_store_failures_total")
        if app[appkeys.SETTINGS].usage.on_store_error == "allow":
            log.warning("usage store unavailable at admission of %s, proceeding per "
                        "usage.on_store_error=allow", x.request_id)
            return None
        err = Unavailable("usage counters are unavailable", code="usage_unavailable")
        await audit(request, event("request.error", x, error=err), required=False)
        raise err from exc
    if limits and x.reservation.used_before:
        _threshold_events(request, x, limits)
    cap_out = x.reservation.output_cap
    if cap_out is None or embeddings:
        return None
    # Lower every token field sent (as the max_tokens obligation does), never just one.
    fields = _output_limits(body) or ["max_tokens"]
    if all(isinstance(body.get(f), int) and body[f] <= cap_out for f in fields):
        return None
    for f in fields:
        current = body.get(f)
        body[f] = cap_out if not isinstance(current, int) else min(current, cap_out)
    return cap_out


def _threshold_events(request: web.Request, x: Exchange, limits: Any) -> None:
    """quota.threshold for every limit this admission carried across 80 % or 100 %."""
    bus = request.app.get(appkeys.EVENTS)
    if bus is None or x.reservation is None:
        return
    from pep.usage.thresholds import crossings  # noqa: PLC0415 - only with event sinks

    p = x.principal
    for c in crossings(limits, x.reservation):
        lim = c.limit
        bus.emit("quota.threshold", lim.key, {
            "request_id": x.request_id, "percent": c.percent, "scope": lim.scope,
            "key": lim.key, "window": lim.window, "metric": lim.metric, "limit": lim.limit,
            "used": c.used, "code": lim.code, "name": lim.name,
            "subject": p.sub if p is not None else None,
            "policy_revision": x.decision.policy_revision if x.decision else None})


async def release_usage(request: web.Request, x: Exchange) -> None:
    """Give the reservation back: the request ended before anything was generated."""
    r = x.reservation
    if r is None or not r.open:
        return
    try:
        await request.app[appkeys.USAGE].release(r)
    except UsageUnavailable as exc:
        # The reservation stays counted until its window ends: over-counting, never under.
        request.app[appkeys.METRICS].inc("usage_store_failures_total")
        log.error("could not release the usage reservation of %s: %s", x.request_id, exc)


async def record_usage(request: web.Request, x: Exchange) -> None:
    u = x.usage
    p = x.principal
    if u is None or p is None:
        return
    metrics, model = request.app[appkeys.METRICS], x.model_served or ""
    metrics.inc("tokens_total", u.prompt_tokens, model=model, kind="prompt")
    metrics.inc("tokens_total", u.completion_tokens, model=model, kind="completion")
    tracker = request.app[appkeys.USAGE]
    try:
        if x.reservation is not None:
            x.cost_usd = await tracker.settle(
                x.reservation, x.model_served or "", u.prompt_tokens, u.completion_tokens,
                estimated=u.estimated)
        else:
            x.cost_usd = await tracker.record(
                p, p.client_id, x.model_served or "", u.prompt_tokens, u.completion_tokens,
                estimated=u.estimated,
            )
        if x.cost_usd:
            metrics.inc("cost_usd_total", x.cost_usd, model=model)
    except UsageUnavailable as exc:
        # The answer was already served; keep its cost in the audit record even so.
        x.cost_usd = getattr(exc, "cost_usd", None)
        request.app[appkeys.METRICS].inc("usage_store_failures_total")
        log.error("could not record usage for %s: %s", x.request_id, exc)
