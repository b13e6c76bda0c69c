"""Admitting one MCP message: content findings over its arguments, the tool-call counters,
the PolicyInput (``request.api = "mcp"``, ``request.mcp``), the decision, the obligations
that apply to MCP (redact arguments, quota, audit_content, max_result_bytes) and the atomic
reservation of a tool call on its counters."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from pep import appkeys
from pep.auditing import event
from pep.errors import GatewayError, Unavailable
from pep.exchange import Exchange
from pep.mcp.jsonrpc import Message
from pep.mcp.service import McpGateway
from pep.policy.contract import Decision
from pep.policy.input import build_policy_input
from pep.principal import Principal
from pep.steps import POLICY_INPUT, audit, decide, denial, over_quota
from pep.usage.admission import InvalidQuota, QuotaExceeded
from pep.usage.tracker import UsageUnavailable

log = logging.getLogger("regogate.mcp")

# Obligations of model calls that mean nothing for an MCP message: a policy that sets one
# believes it enforces something the PEP would ignore, so that is an error (503).
_MODEL_ONLY = ("max_tokens", "model", "system_prompt", "cache")
_WITH_ARGUMENTS = frozenset({"tools/call", "prompts/get"})


async def snapshot(request: web.Request, gw: McpGateway, principal: Principal,
                   extra: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """input.usage for a tool call: the user's, team's and app's tool-call counters, and
    the tool's (``tool``) and this user's of this tool (``user_tool``)."""
    try:
        return await gw.usage.snapshot(principal, principal.client_id, extra=extra)
    except UsageUnavailable as exc:
        app = request.app
        app[appkeys.METRICS].inc("usage_store_failures_total")
        if app[appkeys.SETTINGS].usage.on_store_error == "allow":
            log.warning("usage store unavailable, proceeding per usage.on_store_error=allow")
            return {"unavailable": True}
        raise Unavailable("usage counters are unavailable", code="usage_unavailable") from exc


async def _policy_error(request: web.Request, x: Exchange, text: str, cause: str) -> GatewayError:
    request.app[appkeys.METRICS].inc("policy_errors_total", code=cause)
    err = Unavailable(text, code="policy_unavailable", details={"cause": cause})
    await audit(request, event("policy.error", x, error=err), required=False)
    return err


async def admit_call(request: web.Request, x: Exchange, principal: Principal, server: str,
                     msg: Message, usage: dict[str, Any]) -> tuple[Decision, dict[str, Any]]:
    """Decide on ``msg``; raise on deny. Returns the decision and the message to forward
    (arguments with invisible characters stripped and the redact obligation applied)."""
    app = request.app
    inspector = app[appkeys.CONTENT]
    params = msg.params
    info = x.mcp or {}
    args: dict[str, Any] = (params.get("arguments") or {}) if msg.method in _WITH_ARGUMENTS else {}
    original = args
    if inspector is not None and args:
        # The walker every model request goes through: every string (and every key) of
        # the arguments, findings located as arguments.<path>.
        scan = inspector.scan_request({"arguments": args}, "mcp", 0)
        args, x.findings = scan.body["arguments"], scan.findings
    policy_input = build_policy_input(principal, x.req,  # type: ignore[arg-type]
                                      request_id=x.request_id, source_ip=x.source_ip,
                                      findings=x.findings, usage=usage)
    policy_input["request"]["mcp"] = {
        "server": server, "method": msg.method or "response", "tool": info.get("tool"),
        "arguments": args, "resource_uri": info.get("resource_uri"),
        "prompt": info.get("prompt"),
    }
    request[POLICY_INPUT] = policy_input
    decision = await decide(request, x, policy_input)
    if not decision.allow:
        err = denial(request, x, decision)
        await audit(request, event("policy.deny", x, error=err), required=False)
        raise err
    ob = decision.obligations
    stray = [k for k in _MODEL_ONLY if getattr(ob, k) is not None]
    if stray:
        raise await _policy_error(request, x, f"obligations {stray} do not apply to MCP "
                                  "messages; nothing was forwarded", "obligation_not_applicable")
    if ob.redact and args:
        if inspector is None:
            raise await _policy_error(request, x, "the redact obligation needs content "
                                      "inspection, which is off", "redact_unavailable")
        try:
            body, count = inspector.redact_request({"arguments": args}, "mcp", set(ob.redact))
        except Unavailable as exc:  # unknown finding types: the policy's error
            raise await _policy_error(request, x, exc.message, "unknown_obligation") from exc
        args = body["arguments"]
        if count:
            x.mcp = {**info, "arguments_redacted": count}
    if args is original:
        return decision, msg.doc
    return decision, {**msg.doc, "params": {**params, "arguments": args}}


async def reserve_call(request: web.Request, x: Exchange, gw: McpGateway, decision: Decision,
                       principal: Principal, extra: Sequence[tuple[str, str]]) -> None:
    """Count this tool call on every counter, checking the decision's quota limits in the
    same atomic step (pep/usage/admission.py): a burst cannot pass one snapshot together."""
    app = request.app
    limits = decision.obligations.quota or ()
    try:
        x.reservation = await gw.usage.reserve(
            principal, principal.client_id, "", limits, prompt_tokens=0, output_tokens=0,
            shrinkable=False, extra=extra)
    except QuotaExceeded as exc:
        raise await over_quota(request, x, decision, exc) from None
    except InvalidQuota as exc:
        raise await _policy_error(request, x, str(exc), "policy_invalid") from exc
    except UsageUnavailable as exc:
        app[appkeys.METRICS].inc("usage_store_failures_total")
        if app[appkeys.SETTINGS].usage.on_store_error == "allow":
            log.warning("usage store unavailable at admission of %s, proceeding per "
                        "usage.on_store_error=allow", x.request_id)
            return
        err = Unavailable("usage counters are unavailable", code="usage_unavailable")
        await audit(request, event("request.error", x, error=err), required=False)
        raise err from exc
