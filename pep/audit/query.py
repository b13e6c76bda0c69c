"""Read-side filters shared by the CLI, the HTTP API and both stores."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from pep.audit.timefmt import parse_bound

DECISIONS = ("allow", "deny", "error", "unauthenticated", "rejected", "none")
MAX_LIMIT = 10_000


class QueryError(ValueError):
    """A filter value is invalid; the message names the filter."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    user: str | None = None  # subject or e-mail
    team: str | None = None
    model: str | None = None  # requested or served
    api: str | None = None  # what.api: chat.completions, messages, mcp, ...
    decision: str | None = None  # allow | deny | error | unauthenticated | rejected | none
    event: str | None = None
    request_id: str | None = None
    since: str | None = None  # RFC 3339, inclusive
    until: str | None = None  # RFC 3339, exclusive
    limit: int | None = None
    order: Literal["asc", "desc"] = "asc"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AuditQuery:
        """Validate raw strings (CLI args or URL query); unknown keys are the caller's job."""
        names = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in params.items():
            if key not in names or raw is None or raw == "":
                continue
            values[key] = str(raw)
        if "decision" in values and values["decision"] not in DECISIONS:
            raise QueryError(f"decision must be one of {', '.join(DECISIONS)}")
        for key in ("since", "until"):
            if key in values:
                try:
                    values[key] = parse_bound(values[key])
                except ValueError as exc:
                    raise QueryError(f"{key}: {exc}") from exc
        if "limit" in values:
            try:
                limit = int(values["limit"])
            except ValueError as exc:
                raise QueryError("limit must be an integer") from exc
            if not 0 < limit <= MAX_LIMIT:
                raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
            values["limit"] = limit
        if "order" in values and values["order"] not in ("asc", "desc"):
            raise QueryError("order must be asc or desc")
        return cls(**values)

    def where(self, style: Literal["sqlite", "postgres"]) -> tuple[str, list[Any]]:
        """SQL WHERE clause (without the keyword; "TRUE" when unfiltered) and its params."""
        params: list[Any] = []

        def p(value: Any) -> str:
            params.append(value)
            return "?" if style == "sqlite" else f"${len(params)}"

        clauses: list[str] = []
        if self.user:
            a, b = p(self.user), p(self.user)
            clauses.append(f"(subject = {a} OR email = {b})")
        if self.team:
            if style == "sqlite":
                clauses.append(f"EXISTS (SELECT 1 FROM json_each(teams) WHERE value = {p(self.team)})")
            else:
                clauses.append(f"(teams::jsonb ? {p(self.team)})")
        if self.model:
            a, b = p(self.model), p(self.model)
            clauses.append(f"(model_requested = {a} OR model_served = {b})")
        if self.api:
            # No column of its own: read from the stored record (what.api).
            if style == "sqlite":
                clauses.append(f"json_extract(body, '$.what.api') = {p(self.api)}")
            else:
                clauses.append(f"((body::jsonb) #>> '{{what,api}}') = {p(self.api)}")
        if self.decision:
            clauses.append(f"decision = {p(self.decision)}")
        if self.event:
            clauses.append(f"event = {p(self.event)}")
        if self.request_id:
            clauses.append(f"request_id = {p(self.request_id)}")
        if self.since:
            clauses.append(f"time >= {p(self.since)}")
        if self.until:
            clauses.append(f"time < {p(self.until)}")
        return (" AND ".join(clauses) or "TRUE"), params

    def as_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}
