"""The decision contract security teams program against (PolicyInput v1 -> Decision v1).

These models are the source of truth: ``regogate policy schema`` writes their JSON Schema to
``docs/schema/`` and ``docs/policy-contract.md`` explains every field.

Policies are evaluated at ``data.regogate.decision`` (configurable) and must return an object
shaped like ``Decision`` (minus the ids, which the PEP fills in). Undefined, ill-typed or
multiple results are errors (503). An obligation the PEP does not know is an error (503),
like an unknown JWS ``crit`` header: a policy must never believe it is enforcing something
the PEP silently ignores.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

POLICY_INPUT_VERSION: Final = "v1"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserInput(_Model):
    sub: str = Field(examples=["alice"])
    issuer: str = Field(examples=["https://idp.example.com"])
    kind: Literal["user", "service"] = "user"
    email: str | None = Field(None, examples=["alice@example.com"])
    name: str | None = None
    groups: list[str] = Field(default_factory=list, examples=[["ml-team"]])
    roles: list[str] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list, examples=[["research"]])
    team: str | None = Field(None, description="First team, for convenience", examples=["research"])
    claims: dict[str, Any] = Field(default_factory=dict, description="All verified token claims")


class ClientInput(_Model):
    id: str | None = Field(None, description="Calling app: azp or client_id", examples=["chat-ui"])


class ActorInput(_Model):
    sub: str | None = None
    claims: dict[str, Any] = Field(default_factory=dict, description="The verified act claim")


class MessageInput(_Model):
    role: str
    text: str = Field(description="All text parts of the message, joined with newlines")


class PreviousResponseInput(_Model):
    id: str = Field(description="The previous_response_id this request continues",
                    examples=["resp_0123abcd"])
    owner: str = Field(description="sub of the user who created it (always the caller: "
                       "another user's id is a 404 before policy)", examples=["alice"])
    chain_length: int = Field(description="Responses in the conversation before this one",
                              examples=[2])


class McpInput(_Model):
    """An MCP message (``request.api == "mcp"``, docs/mcp.md). List results are filtered by
    one evaluation per item, with ``method`` the list method and ``tool`` / ``resource_uri``
    / ``prompt`` naming the item: a tool the user may not call is not listed."""

    server: str = Field(description="Configured upstream server name", examples=["demo"])
    method: str = Field(description="JSON-RPC method", examples=["tools/call"])
    tool: str | None = Field(None, description="tools/call: the tool; tools/list: the item",
                             examples=["echo"])
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="tools/call and prompts/get arguments (as the "
        "client sent them; content.findings locate what the detectors found in them)")
    resource_uri: str | None = Field(None, description="resources/read, resources/list item",
                                     examples=["demo://readme"])
    prompt: str | None = Field(None, description="prompts/get, prompts/list item")


class RequestInput(_Model):
    id: str = Field(description="Request id, echoed to the client in x-request-id")
    api: Literal[
        "chat.completions", "responses", "completions", "embeddings", "messages",
        "messages.count_tokens", "models.list", "responses.read", "responses.delete",
        "audit.read", "usage.read", "mcp",
    ] = "chat.completions"
    inbound_format: Literal["openai", "anthropic"] = "openai"
    model: str = Field(examples=["mock-gpt"])
    provider: str | None = Field(None, description="Provider kind the model maps to")
    stream: bool = False
    max_tokens: int | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="Other request parameters")
    tools: list[str] = Field(default_factory=list, description="Names of tools offered")
    messages: list[MessageInput] = Field(default_factory=list)
    text: str = Field("", description="All message text, joined, for simple matching")
    estimated_tokens: int = 0
    source_ip: str | None = None
    previous_response: PreviousResponseInput | None = Field(
        None, description="Responses API: the stored conversation this request continues")
    cache_control: list[str] = Field(
        default_factory=list, description="Directives of the client's Cache-Control header, "
        "lower-cased", examples=[["no-cache"]])
    mcp: McpInput | None = Field(None, description="MCP messages only (api mcp)")


class Finding(_Model):
    type: str = Field(examples=["email"])
    message_index: int = Field(
        description="Message whose text (request.messages[i].text) the offsets index; -1 when "
        "the finding is in another field (tool arguments, tool schemas, stop, user, ...): "
        "then the offsets index the normalised string at ``location``")
    start: int = Field(description="Start offset in the message text (normalised form)")
    end: int
    detector: str = "builtin"
    location: str | None = Field(
        None,
        description="Where in the canonical request the text was found; None for output "
        "findings and for findings made by older PEP versions",
        examples=["messages[2].tool_calls[0].function.arguments.query",
                  "messages[0].content", "tools[0].function.description", "input[1]"])


class ContentInput(_Model):
    findings: list[Finding] = Field(
        default_factory=list, description="The first MAX_POLICY_FINDINGS findings, in order")
    types: list[str] = Field(default_factory=list, description="Distinct types of ALL findings")
    truncated: bool = Field(False, description="True when findings were cut to the limit")


# A prompt can carry tens of thousands of findings (a pasted CSV of phone numbers); the
# policy sees the first ones and every type, so its input stays bounded.
MAX_POLICY_FINDINGS = 1000


class TimeInput(_Model):
    now_ns: int
    rfc3339: str
    weekday: str
    hour: int


class OutputInput(_Model):
    """Present only for the optional output decision (evaluated on the model's answer)."""

    text: str = Field(description="Answer text so far (whole answer when final)")
    findings: list[Finding] = Field(default_factory=list, description="At most MAX_POLICY_FINDINGS")
    types: list[str] = Field(default_factory=list, description="Distinct types of all findings")
    truncated: bool = False
    final: bool = Field(True, description="False for a mid-stream check")


class PolicyInput(_Model):
    version: Literal["v1"] = POLICY_INPUT_VERSION
    user: UserInput
    client: ClientInput = ClientInput()
    actor: ActorInput | None = None
    request: RequestInput
    content: ContentInput = ContentInput()
    usage: dict[str, Any] = Field(default_factory=dict, description="Counters, see usage docs")
    time: TimeInput
    output: OutputInput | None = None


# "tool" and "user_tool" count MCP tool calls only: every call of one tool (key
# "<server>/<tool>"), and one user's calls of it (key "<sub> <server>/<tool>"); docs/mcp.md.
QuotaScope = Literal["user", "team", "client", "tool", "user_tool"]


class QuotaRef(_Model):
    """Attached to a reason when a denial is about a quota: the PEP answers 429 with a
    Retry-After computed from this window."""

    scope: QuotaScope
    window: Literal["minute", "hour", "day", "month"]
    metric: str = "tokens"


class Reason(_Model):
    code: str = Field(examples=["model_not_allowed"])
    message: str = Field("", examples=["contractors may not use gpt-admin"])
    quota: QuotaRef | None = None


AuditContent = Literal["none", "digest", "redacted", "full"]
QuotaMetric = Literal["requests", "prompt_tokens", "completion_tokens", "tokens", "cost_usd"]


class QuotaLimit(_Model):
    """One limit in effect for this request (the ``quota`` obligation). The PEP checks all of
    them and reserves this request's estimated usage on every counter in one atomic step, so
    a limit holds at any concurrency (docs/usage.md "Admission"). A failed check is a 429
    with ``code``, exactly as if the policy had denied."""

    scope: QuotaScope
    key: str = Field(description="Whose counter: the user's sub, a team, or the client id",
                     examples=["bob"])
    window: Literal["minute", "hour", "day", "month"]
    metric: QuotaMetric
    limit: float = Field(ge=0, description="The counter must stay below this (USD for cost)")
    code: str = Field(examples=["quota_requests_per_minute"])
    name: str | None = Field(None, description="Shown in the denial message")
    shrink: bool = Field(True, description="Token limits: cap max_tokens to what is left")


class CacheObligation(_Model):
    """Response caching for this request (docs/caching.md). Absent or ``mode: off``: no
    caching. Entries are partitioned by ``scope`` (the verified identity) and the policy
    revision, so a cached answer never reaches someone this policy would not have shown it to."""

    mode: Literal["exact", "semantic", "off"] = Field(
        "exact", description="exact: identical canonical request; semantic: the last user "
        "message may be a paraphrase (exact when no embeddings model is configured)")
    scope: Literal["user", "team", "client", "org"] = Field(
        "user", description="Who shares entries: the user (issuer+sub), the user's first team, "
        "the calling app, or everyone of the issuer")
    ttl_s: int = Field(300, ge=1, description="Entry lifetime (capped by cache.max_ttl_s)")
    min_similarity: float | None = Field(
        None, ge=0, le=1, description="semantic mode: least cosine similarity for a hit")
    sampled: bool = Field(
        False, description="Also cache requests with temperature > 0 or unset (sampling)")
    client_control: bool = Field(
        True, description="Honour the client's Cache-Control no-cache / no-store")


class Obligations(_Model):
    """Everything the PEP enforces. Unknown keys are rejected (fail closed)."""

    max_tokens: int | None = Field(None, ge=1, description="Cap on output tokens")
    model: str | None = Field(None, description="Reroute to this configured model")
    redact: list[str] | None = Field(None, description="Finding types to mask before forwarding")
    system_prompt: str | None = Field(None, description="Prepended as a system message")
    audit_content: AuditContent | None = Field(None, description="How much content to audit")
    quota: list[QuotaLimit] | None = Field(
        None, description="Limits the PEP checks and reserves against atomically")
    cache: CacheObligation | None = Field(None, description="Response caching (docs/caching.md)")
    max_result_bytes: int | None = Field(
        None, ge=1, description="MCP: a result larger than this (JSON bytes) is withheld")


class Decision(_Model):
    allow: bool
    reasons: list[Reason] = Field(default_factory=list)
    obligations: Obligations = Obligations()
    decision_id: str | None = Field(None, description="Filled by the PEP: the request id")
    engine_decision_id: str | None = Field(
        None, description="Filled by the PEP: OPA's own decision_id (its decision log entry)"
    )
    policy_revision: str | None = Field(
        None, description="Filled by the PEP: revision of the bundle that decided"
    )
