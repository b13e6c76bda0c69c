"""The optional output decision: the policy evaluated again on the model's answer.

The same decision path is evaluated with ``input.output`` set (text, findings, final). A deny
withholds a plain answer (403) or cuts a stream (pep.streaming: text is held back until it
was checked, so nothing unchecked is delivered); a ``redact`` obligation masks finding types
*found in the answer* in a plain answer, in content and tool-call arguments alike. Streams
cannot be redacted, only cut. Semantics: docs/policy-contract.md.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from pep import appkeys
from pep.auditing import event
from pep.errors import PolicyDenied
from pep.exchange import Exchange
from pep.policy.contract import MAX_POLICY_FINDINGS, Decision
from pep.policy.input import finding_docs
from pep.steps import POLICY_INPUT, audit, decide


def output_enabled(request: web.Request) -> bool:
    app = request.app
    return app[appkeys.SETTINGS].policy.output_decision and app[appkeys.CONTENT] is not None


async def evaluate_output(
    request: web.Request, x: Exchange, text: str, findings: list[Any], *, final: bool
) -> Decision:
    docs, types = finding_docs(findings)
    # The request's input with the answer added; usage counters are left out (they are about
    # admitting the request, and cost ~30 us of JSON per evaluation): docs/policy-contract.md.
    base: dict[str, Any] = request[POLICY_INPUT]
    policy_input = {**base, "usage": {},
                    "output": {"text": text, "findings": docs, "types": types, "final": final,
                               "truncated": len(findings) > MAX_POLICY_FINDINGS}}
    enforced = x.decision
    decision = await decide(request, x, policy_input)
    # The request-phase decision stays the one the audit trail refers to.
    x.decision = enforced
    return decision


def output_denial(request: web.Request, decision: Decision) -> PolicyDenied:
    codes = [r.code for r in decision.reasons] or ["output_denied"]
    request.app[appkeys.METRICS].inc("output_denials_total")
    return PolicyDenied(
        "; ".join(r.message or r.code for r in decision.reasons) or "answer withheld by policy",
        code=codes[0],
        details={"reasons": codes, "decision_id": decision.decision_id, "phase": "output"},
    )


async def check_output_plain(request: web.Request, x: Exchange, body: dict[str, Any]) -> dict[str, Any]:
    inspector = request.app[appkeys.CONTENT]
    if not output_enabled(request) or inspector is None:
        return body
    choices = body.get("choices") or []
    # Content and tool-call arguments are both model output the client receives.
    texts = [
        inspector.normalise(t)
        for c in choices
        if isinstance(c.get("message"), dict)
        for t in _output_strings(c["message"])
    ]
    text = "\n".join(texts)
    findings = inspector.inspect([text])
    decision = await evaluate_output(request, x, text, findings, final=True)
    if not decision.allow:
        err = output_denial(request, decision)
        await audit(request, event("policy.deny", x, error=err, extra={"phase": "output"}),
                    required=False)
        raise err
    wanted = set(decision.obligations.redact or ()) & {f.type for f in findings}
    if wanted:
        for c in choices:
            msg = c.get("message")
            if isinstance(msg, dict):
                # The request walker: content and tool arguments (still valid JSON).
                (c["message"],), _ = inspector.redact_messages([msg], wanted)
    return body


def _output_strings(message: dict[str, Any]) -> list[str]:
    out = [message["content"]] if isinstance(message.get("content"), str) else []
    for call in message.get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            out.append(fn["arguments"])
    return out
