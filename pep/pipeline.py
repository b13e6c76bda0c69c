"""The model-calling request path (GUIDE.md section 1).

    authenticate -> validate (pep.validation) -> inspect content -> usage snapshot -> PolicyInput
    -> decide (deny: 403/429 + audit; error: 503 + audit)
    -> obligations -> reserve quota atomically (refused: 429 + audit)
    -> durable audit intent -> router -> response/stream -> settle usage + audit completion

Every exit writes exactly one terminal audit record for the request. The provider is never
called unless the intent record is durable (GUIDE.md 3.8). The individual steps live in
``pep.steps``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from adapters.types import Completion
from pep import appkeys
from pep.auditing import content_mode, event
from pep.cache.service import cache_directives
from pep.cache.service import lookup as cache_lookup
from pep.errors import GatewayError, Unavailable
from pep.exchange import Exchange
from pep.inbound import Dialect
from pep.obligations import apply_obligations
from pep.output import check_output_plain
from pep.policy.contract import Decision
from pep.policy.engine import PolicyError
from pep.policy.input import build_policy_input
from pep.principal import Principal
from pep.request import NormalizedRequest
from pep.steps import (
    POLICY_INPUT,
    audit,
    authenticate,
    decide,
    denial,
    exchange_for,
    record_usage,
    release_usage,
    reserve_usage,
    usage_snapshot,
)
from pep.routing.outcome import RouteFailed
from pep.routing.stream import ChunkStream
from pep.streaming import relay_stream
from pep.tracing import annotate_upstream, child, upstream_headers
from pep.validation import validated_request

INLINE_SCAN_CHARS = 32_768  # below this, scanning costs less than a thread hand-off


async def admit(
    request: web.Request, x: Exchange, req: NormalizedRequest, principal: Principal
) -> Decision:
    """Inspect, snapshot usage, decide; raise on deny. Shared by every model-calling API."""
    app = request.app
    inspector = app[appkeys.CONTENT]
    if inspector is not None:
        # One pass over every forwarded client string (pep.content.walk): findings with their
        # location, and the body to forward with invisible characters stripped (strip mode)
        # so the provider gets exactly what was inspected. The policy sees the normalised
        # message texts, so finding offsets line up with request.messages[i].text.
        # Large inputs are scanned on a worker thread: the regexes still hold the GIL, but only
        # a switch interval at a time, so one huge prompt cannot stall every other request.
        size = max(request.content_length or 0, sum(map(len, req.texts)))
        if size > INLINE_SCAN_CHARS:
            scan = await asyncio.to_thread(inspector.scan_request, req.body, req.api,
                                           len(req.texts))
        else:
            scan = inspector.scan_request(req.body, req.api, len(req.texts))
        if scan.body is not req.body:  # something was stripped: params as forwarded too
            req.params = {k: scan.body[k] for k in req.params if k in scan.body}
        req.body, req.texts, x.findings = scan.body, scan.texts, scan.findings
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
    """The whole path for chat completions, Anthropic messages, legacy completions and
    embeddings."""
    x = exchange_for(request)
    principal = await authenticate(request, x)
    req = await validated_request(request, x, dialect, api)
    return await forward_normalized(request, dialect, api, principal, req)


async def forward_normalized(
    request: web.Request, dialect: Dialect, api: str, principal: Principal, req: NormalizedRequest
) -> web.StreamResponse:
    """From a validated request on: the stream slot, admission, obligations, the provider
    call and the response. Endpoints that build their canonical request themselves (the
    Responses API with its stored conversation) validate it with ``pep.validation`` and
    enter here."""
    app = request.app
    x = exchange_for(request)
    x.req = req
    x.api = api
    req.cache_control = cache_directives(request.headers.get("Cache-Control"))
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
    catalog = app[appkeys.CATALOG]
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
    x.forwarded = out_body  # the reservation below may still lower its max_tokens in place
    cap = await reserve_usage(request, x, decision, out_body, model)
    # After the reservation's cap (part of the key); a hit is still audited and output-checked.
    ticket = await cache_lookup(request, x, api)
    try:
        # The decision record shows the policy's obligations; a cap the reservation lowered
        # further (what was left under concurrency) is recorded beside it.
        await audit(request, event("request.intent", x,
                                   extra=None if cap is None else {"quota_max_tokens": cap}),
                    required=True)
    except GatewayError:
        await release_usage(request, x)
        raise
    result: Any = ticket.result
    if result is None:  # a miss: the provider answers, and the cache watches the answer
        result = ticket.watch(await _call_upstream(request, x, api, out_body, model))
    x.served = result.served
    if isinstance(result, Completion):
        response = await _complete_plain(request, x, dialect, result, api)
    else:
        response = await relay_stream(request, x, dialect, result)
    await ticket.fill(x)
    return response


async def _call_upstream(request: web.Request, x: Exchange, api: str, out_body: dict[str, Any],
                         model: str) -> Completion | ChunkStream:
    app = request.app
    router = app[appkeys.ROUTER]
    catalog = app[appkeys.CATALOG]
    result: Completion | ChunkStream
    t0 = time.perf_counter()
    op = "embeddings" if api == "embeddings" else "chat"
    try:
        with child(x, f"{op} {model}", client=True) as span:
            annotate_upstream(span, x, op, catalog.provider_kind(model) or "")
            trace_headers = upstream_headers(span)
            if api == "embeddings":
                result = await router.embeddings(out_body, model, request_id=x.request_id,
                                                 trace_headers=trace_headers)
            else:
                result = await router.chat(out_body, model, request_id=x.request_id,
                                           trace_headers=trace_headers)
            if span is not None:
                span.set_attribute("gen_ai.response.model", result.served.model)
    except RouteFailed as failed:
        err = failed.error
        x.upstream_s = time.perf_counter() - t0
        # Nothing was generated: the reservation goes back. (A cancelled request keeps its
        # reservation: the provider may still be generating; it expires with its window.)
        await release_usage(request, x)
        x.served = failed.served
        if not _client_fault(err):  # a provider 400 for the client's typo is the client's
            app[appkeys.METRICS].inc("upstream_errors_total", code=err.code)
        # Status, allow-listed provider code and body size only: never the provider's text.
        await audit(request, event("upstream.error", x, error=err,
                                   extra={"upstream": err.upstream} if err.upstream else None),
                    required=False)
        raise err from err.__cause__  # the client-facing error, its own cause kept
    x.upstream_s = time.perf_counter() - t0
    app[appkeys.METRICS].observe("upstream_duration_seconds", x.upstream_s, model=model)
    return result


async def _complete_plain(
    request: web.Request, x: Exchange, dialect: Dialect, result: Any, api: str
) -> web.StreamResponse:
    body = result.body
    x.usage = result.usage
    # Counted before the output decision: a withheld answer was still generated (and billed).
    await record_usage(request, x)
    if api != "embeddings":
        body = await check_output_plain(request, x, body)
    rendered = dialect.render(body) if api != "embeddings" else body
    response_audit = _response_content(x, body, api)
    await audit(request, event("request.completion", x, status=200,
                               response_content=response_audit), required=False)
    return web.Response(body=orjson.dumps(rendered), content_type="application/json")


def _response_content(x: Exchange, body: dict[str, Any], api: str) -> Any:
    if content_mode(x) == "none" or api == "embeddings":
        return None
    return [c.get("message", {}).get("content") for c in body.get("choices", [])]


def _client_fault(err: GatewayError) -> bool:
    return 400 <= err.status < 500 and err.status not in (408, 429)
