"""Build the PolicyInput v1 document.

This is on the hot path, so it builds plain dicts directly instead of constructing pydantic
models; ``tests/policy/test_input_builder.py`` validates its output against
``pep.policy.contract.PolicyInput`` so the two cannot drift apart.
"""

from __future__ import annotations

import time
from typing import Any

from pep.policy.contract import MAX_POLICY_FINDINGS, POLICY_INPUT_VERSION
from pep.principal import Principal
from pep.request import NormalizedRequest
from pep.timestamps import from_float_seconds

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def user_doc(p: Principal) -> dict[str, Any]:
    return {
        "sub": p.sub,
        "issuer": p.issuer,
        "kind": p.kind,
        "email": p.email,
        "name": p.name,
        "groups": list(p.groups),
        "roles": list(p.roles),
        "teams": list(p.teams),
        "team": p.team,
        "claims": p.claims,
    }


def time_doc(now_ns: int | None = None) -> dict[str, Any]:
    now_ns = time.time_ns() if now_ns is None else now_ns
    # As datetime.fromtimestamp(now_ns / 1e9, UTC) would say it (pep.timestamps).
    rfc3339, weekday, hour = from_float_seconds(now_ns / 1e9)
    return {"now_ns": now_ns, "rfc3339": rfc3339, "weekday": _WEEKDAYS[weekday], "hour": hour}


def finding_docs(findings: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Finding documents (at most MAX_POLICY_FINDINGS) and the distinct types of all."""
    docs = [
        {
            "type": f.type,
            "message_index": f.message_index,
            "start": f.start,
            "end": f.end,
            "detector": f.detector,
            "location": f.location,
        }
        for f in findings[:MAX_POLICY_FINDINGS]
    ]
    return docs, sorted({f.type for f in findings})


def build_policy_input(
    principal: Principal,
    req: NormalizedRequest,
    *,
    request_id: str,
    source_ip: str | None,
    findings: list[Any] = (),  # type: ignore[assignment]
    usage: dict[str, Any] | None = None,
    provider: str | None = None,
    now_ns: int | None = None,
) -> dict[str, Any]:
    content_findings, types = finding_docs(list(findings))
    actor = principal.actor
    return {
        "version": POLICY_INPUT_VERSION,
        "user": user_doc(principal),
        "client": {"id": principal.client_id},
        "actor": (
            {"sub": actor.get("sub") if isinstance(actor.get("sub"), str) else None, "claims": actor}
            if actor
            else None
        ),
        "request": {
            "id": request_id,
            "api": req.api,
            "inbound_format": req.inbound_format,
            "model": req.model,
            "provider": provider,
            "stream": req.stream,
            "max_tokens": req.max_tokens,
            "params": req.params,
            "tools": req.tools,
            "messages": [{"role": r, "text": t} for r, t in zip(req.roles, req.texts)],
            "text": "\n".join(req.texts),
            "estimated_tokens": req.estimated_tokens,
            "source_ip": source_ip,
            "previous_response": req.previous_response,
            "cache_control": req.cache_control,
        },
        "content": {"findings": content_findings, "types": types,
                    "truncated": len(findings) > MAX_POLICY_FINDINGS},
        "usage": usage or {},
        "time": time_doc(now_ns),
    }
