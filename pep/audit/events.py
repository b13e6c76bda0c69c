"""Audit event schema v1 (see docs/audit.md) and the store interface.

One request = one request_id = one decision id. A request that is allowed writes a
``request.intent`` record that is durable *before* the provider is called, then a
``request.completion`` (or ``upstream.error``) record. Denials and failures write one record;
so does a request refused before policy (``request.rejected``: bad body, unknown model, size).
The store adds the chain fields (sequence, hashes) when it appends.

Never put bearer tokens, provider keys or other secrets in an event.
"""

from __future__ import annotations

from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

AUDIT_SCHEMA_VERSION: Final = "v1"

EventType = Literal[
    "auth.failure",
    "request.rejected",
    "policy.deny",
    "policy.error",
    "request.intent",
    "request.completion",
    "request.error",
    "upstream.error",
    "shadow.divergence",
    "audit.read",
    "request.aborted",
    "audit.outage",
    "session.login",
    "session.logout",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Who(_Model):
    subject: str | None = None
    issuer: str | None = None
    email: str | None = None
    name: str | None = None
    kind: str | None = None
    groups: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)
    client_id: str | None = None
    actor: dict[str, Any] | None = None
    source_ip: str | None = None


class What(_Model):
    api: str | None = None
    method: str | None = None
    path: str | None = None
    model_requested: str | None = None
    model_served: str | None = None
    provider: str | None = None
    deployment: str | None = None
    stream: bool | None = None
    params_digest: str | None = None
    response_id: str | None = None  # Responses API: the stored response this request made


class DecisionRecord(_Model):
    allow: bool
    reasons: list[dict[str, Any]] = Field(default_factory=list)
    obligations: dict[str, Any] = Field(default_factory=dict)
    policy_revision: str | None = None
    engine: str | None = None
    engine_decision_id: str | None = Field(
        None, description="OPA's decision_id: joins this record to OPA's decision log"
    )


class Outcome(_Model):
    status: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_estimated: bool | None = None
    cost_usd: float | None = None
    latency_ms: float | None = None


class ContentRecord(_Model):
    mode: Literal["none", "digest", "redacted", "full"] = "digest"
    prompt_sha256: str | None = None
    response_sha256: str | None = None
    prompt: Any | None = None
    response: Any | None = None


class AuditEvent(_Model):
    schema_version: Literal["v1"] = AUDIT_SCHEMA_VERSION
    event: EventType
    time: str = Field(description="RFC 3339 UTC with microseconds")
    request_id: str
    decision_id: str | None = None
    who: Who = Who()
    what: What = What()
    decision: DecisionRecord | None = None
    outcome: Outcome | None = None
    content: ContentRecord | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class AuditUnavailable(Exception):
    """The store could not make a record durable; the request must be refused (503)."""


class AuditStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, event: AuditEvent | dict[str, Any]) -> None:
        """Return only once the event is durable; raise AuditUnavailable otherwise."""
        ...

    async def ready(self) -> tuple[bool, dict[str, Any]]: ...
