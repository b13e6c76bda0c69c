"""Everything the gateway learns about one request, accumulated as the pipeline proceeds."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from adapters.types import Served, Usage
from pep.http.body import BodySizes
from pep.policy.contract import Decision
from pep.principal import Principal
from pep.usage.admission import Reservation
from pep.request import NormalizedRequest


@dataclass(slots=True)
class Exchange:
    request_id: str
    method: str
    path: str
    source_ip: str | None
    started: float = field(default_factory=time.perf_counter)
    principal: Principal | None = None
    req: NormalizedRequest | None = None
    decision: Decision | None = None
    engine: str | None = None
    model_served: str | None = None  # client-facing name after a reroute obligation
    served: Served | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    reservation: Reservation | None = None  # this request's usage reserved at admission
    findings: list[Any] = field(default_factory=list)
    prompt_audit: Any = None  # what the audit_content obligation lets us keep of the prompt
    body: BodySizes | None = None  # set once the body is read (pep.validation)
    # A terminal audit record (refusal, error or completion) was written or attempted: the
    # error middleware adds request.rejected / request.error only when it was not.
    terminal_recorded: bool = False
    forwarded: dict[str, Any] | None = None  # the canonical body sent, after obligations
    response_id: str | None = None  # Responses API: the id of the response being created
    api: str | None = None  # chat.completions, messages, embeddings, ... (metrics, logs)
    policy_s: float | None = None  # time the policy engine took
    upstream_s: float | None = None  # time until the provider's answer (first byte for streams)
    trace_id: str | None = None
    span: Any = None  # the request's OpenTelemetry span (None: tracing off)
    tracer: Any = None
    outcome_status: int | None = None  # a stream's real outcome (its status line said 200)
    status: int | None = None  # a stream's final status (200: ended cleanly, not cut)
    cache: dict[str, Any] | None = None  # extra.cache of the audit records (pep.cache)
    cache_header: str | None = None  # x-regogate-cache: hit | miss | bypass
    mcp: dict[str, Any] | None = None  # extra.mcp of the audit records (pep.mcp.proxy)

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)
