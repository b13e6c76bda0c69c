"""Authorise a gateway-internal API call (auditor API, usage API) with the same identity and
policy path as model calls: authenticate the bearer token, then ask the policy with
``request.api`` set to e.g. ``audit.read``. Denials and engine failures are audited."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from pep import appkeys
from pep.auditing import event
from pep.exchange import Exchange
from pep.steps import audit, authenticate, decide, denial, exchange_for
from pep.policy.input import build_policy_input
from pep.principal import Principal
from pep.request import NormalizedRequest


async def authorize(
    request: web.Request, *, api: str, params: dict[str, Any] | None = None, model: str = "",
    credentials: Mapping[str, str] | None = None,
) -> Principal:
    """``credentials``: authenticate these headers instead of the request's (a workspace
    session's token); the policy question and its audit are the same either way."""
    x: Exchange = exchange_for(request)
    principal = await authenticate(request, x, credentials)
    req = NormalizedRequest(
        api=api, inbound_format="openai", model=model, stream=False, body={},
        params=dict(params or {}),
    )
    x.req = req
    policy_input = build_policy_input(
        principal, req, request_id=x.request_id, source_ip=x.source_ip
    )
    decision = await decide(request, x, policy_input)
    if not decision.allow:
        err = denial(request, x, decision)
        await audit(request, event("policy.deny", x, error=err), required=False)
        raise err
    return principal


async def allowed_models(request: web.Request, principal: Principal, x: Exchange) -> list[str]:
    """The configured models this principal may use (one evaluation per model; not audited as
    a model call, and a policy failure fails the whole listing closed)."""
    catalog = request.app[appkeys.CATALOG]
    allowed = []
    for name in catalog.names:
        req = NormalizedRequest(api="models.list", inbound_format="openai", model=name,
                                stream=False, body={})
        policy_input = build_policy_input(
            principal, req, request_id=x.request_id, source_ip=x.source_ip,
            provider=catalog.provider_kind(name),
        )
        decision = await decide(request, x, policy_input)
        if decision.allow:
            allowed.append(name)
    x.decision = None
    return allowed
