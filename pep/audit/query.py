"""Read-side filters shared by the CLI, the HTTP API and both stores."""

from __future__ import annotations

import re
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
    decision: str | None = None  # allow | deny | error | unauthenticated | rejected | none
    event: str | None = None
    request_id: str | None = None
    since: str | None = None  # RFC 3339, inclusive
    until: str | None = None  # RFC 3339, exclusive
    reason: str | None = None  # a deny reason code (decision.reasons[].code)
    api: str | None = None  # what.api: chat.completions, messages, mcp, audit.read, ...
    # Hide the auditors' own successful reads (event audit.read): the workspace's default,
    # so reading the trail does not flood it. Refused reads (policy.deny) always show.
    hide_reads: bool = False
    limit: int | None = None
    order: Literal["asc", "desc"] = "asc"
    # Keyset position (exclusive), set from a validated cursor, never from a raw parameter.
    before_seq: int | None = None
    after_seq: int | None = None
    # ``user`` resolved by the reader (pep.audit.apicommon.resolve_user): the subject itself
    # plus every subject seen with that e-mail, so one indexed ``subject`` range serves the
    # list, newest first, without an OR across two indexes and a sort.
    subjects: tuple[str, ...] | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> AuditQuery:
        """Validate raw strings (CLI args or URL query); unknown keys are the caller's job."""
        names = {f.name for f in fields(cls)} - _INTERNAL
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
        if "hide_reads" in values:
            values["hide_reads"] = values["hide_reads"] in ("1", "true", "True")
        for key in ("reason", "api"):
            if key in values and not _CODE.fullmatch(values[key]):
                raise QueryError(f"{key} must be letters, digits and . _ - only")
        return cls(**values)

    def where(self, style: Literal["sqlite", "postgres"]) -> tuple[str, list[Any]]:
        """SQL WHERE clause (without the keyword; "TRUE" when unfiltered) and its params."""
        params: list[Any] = []

        def p(value: Any) -> str:
            params.append(value)
            return "?" if style == "sqlite" else f"${len(params)}"

        clauses: list[str] = []
        if self.subjects is not None:
            marks = [p(v) for v in self.subjects]
            clauses.append(f"subject = {marks[0]}" if len(marks) == 1
                           else f"subject IN ({', '.join(marks)})")
        elif self.user:
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
        if self.reason:  # a deny's reason code: only denials are searched (indexed decision)
            clauses.append("decision = 'deny'")
            if style == "sqlite":
                clauses.append("EXISTS (SELECT 1 FROM json_each(COALESCE(json_extract(body, "
                               "'$.decision.reasons'), '[]')) WHERE json_extract(value, '$.code') "
                               f"= {p(self.reason)})")
            else:
                clauses.append("(body::jsonb -> 'decision' -> 'reasons') @> "
                               f"jsonb_build_array(jsonb_build_object('code', {p(self.reason)}::text))")
        if self.api:
            if style == "sqlite":
                clauses.append(f"json_extract(body, '$.what.api') = {p(self.api)}")
            else:
                clauses.append(f"(body::jsonb -> 'what' ->> 'api') = {p(self.api)}")
        if self.hide_reads and self.event != "audit.read":
            clauses.append("event <> 'audit.read'")
        if self.before_seq is not None:
            clauses.append(f"seq < {p(self.before_seq)}")
        if self.after_seq is not None:
            clauses.append(f"seq > {p(self.after_seq)}")
        return (" AND ".join(clauses) or "TRUE"), params

    def as_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in _INTERNAL and getattr(self, f.name)}

    def filters(self) -> dict[str, Any]:
        """The filters alone (no limit, order or position): what a cursor is bound to."""
        return {k: v for k, v in self.as_params().items() if k not in ("limit", "order")}


_INTERNAL = frozenset({"before_seq", "after_seq", "subjects"})
_CODE = re.compile(r"[A-Za-z0-9._-]{1,128}")
