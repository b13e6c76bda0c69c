"""Enforce a Decision's obligations on the canonical request before it is forwarded.

Order: reroute (model) -> cap (max_tokens) -> redact -> system_prompt. Unknown obligations
never reach this module: ``parse_decision`` rejects them (fail closed, like JWS ``crit``).
A reroute to a model that is not configured is a policy error (503), never a silent no-op.
"""

from __future__ import annotations

from typing import Any, Protocol

from pep.policy.contract import Decision
from pep.policy.engine import PolicyError
from pep.request import TOKEN_LIMIT_FIELDS, NormalizedRequest


class Redactor(Protocol):
    def redact_request(
        self, body: dict[str, Any], api: str, types: set[str]
    ) -> tuple[dict[str, Any], int]: ...


def apply_obligations(
    decision: Decision,
    req: NormalizedRequest,
    *,
    configured_models: frozenset[str] | set[str],
    redactor: Redactor | None,
    finding_types: set[str],
) -> tuple[dict[str, Any], str, Any]:
    """Returns (body to forward, client-facing model name to route, prompt as audit sees it)."""
    ob = decision.obligations
    if ob.max_result_bytes is not None:
        # An MCP obligation (pep.mcp): a model call has no tool result to cap.
        raise PolicyError("max_result_bytes applies to MCP messages only",
                          "obligation_not_applicable")
    body = dict(req.body)
    key = "input" if req.api == "embeddings" else "messages"
    original: Any = body.get(key)  # validated by pep.request: a list (or str for embeddings)
    model = req.model
    if ob.model is not None and ob.model != model:
        if ob.model not in configured_models:
            raise PolicyError(
                f"policy rerouted to model {ob.model!r}, which is not configured", "policy_invalid"
            )
        model = ob.model
        body["model"] = model
    if ob.max_tokens is not None and req.api != "embeddings":
        _cap_tokens(body, ob.max_tokens)
    redacted = original
    if ob.redact:
        wanted = set(ob.redact) & finding_types
        if wanted:
            if redactor is None:
                raise PolicyError("redact obligation but content inspection is off", "policy_invalid")
            # Every forwarded client string, not only message text (pep.content.walk).
            body, _ = redactor.redact_request(body, req.api, wanted)
            redacted = body.get(key)
    if ob.system_prompt and req.api != "embeddings":
        body["messages"] = [{"role": "system", "content": ob.system_prompt}, *body["messages"]]
    mode = ob.audit_content or "digest"
    prompt_audit = None if mode == "none" else (redacted if mode == "redacted" else original)
    return body, model, prompt_audit


def _cap_tokens(body: dict[str, Any], cap: int) -> None:
    """Cap every output-token field the request carries: a provider may honour any of them
    (OpenAI reads max_completion_tokens, older compatible servers max_tokens), so capping one
    and forwarding the other uncapped would let the client out-ask the policy. With none
    set, ``max_tokens`` is added: every adapter and OpenAI-compatible server reads it."""
    present = [f for f in TOKEN_LIMIT_FIELDS if body.get(f) is not None]
    for name in present or ["max_tokens"]:
        current = body.get(name)
        body[name] = cap if current is None else min(current, cap)
