"""Shared builders for the audit tests (events that look like the pipeline's)."""

from __future__ import annotations

from pathlib import Path

from pep.audit.events import AuditEvent, DecisionRecord, Outcome, What, Who
from pep.audit.settings import AuditSettings

USERS = {
    "alice": (["ml-team"], ["research"]),
    "bob": (["contractors"], ["sales"]),
    "carol": (["admins"], ["platform"]),
}


def make_event(
    user: str | None,
    n: int,
    *,
    kind: str = "request.intent",
    allow: bool = True,
    model: str = "mock-gpt",
    day: int = 1,
    tokens: tuple[int, int] | None = None,
) -> AuditEvent:
    who = Who()
    if user is not None:
        groups, teams = USERS.get(user, ([], []))
        who = Who(subject=user, issuer="http://127.0.0.1/dev", email=f"{user}@example.com",
                  groups=groups, teams=teams, client_id="cli")
    outcome = None
    if tokens is not None or kind in ("request.completion", "policy.deny"):
        outcome = Outcome(status=200 if allow else 403,
                          tokens_in=tokens[0] if tokens else None,
                          tokens_out=tokens[1] if tokens else None,
                          cost_usd=0.001 if tokens else None)
    reasons = [] if allow else [{"code": "model_not_allowed", "message": "no"}]
    return AuditEvent(
        event=kind,
        time=f"2025-01-{day:02d}T10:00:{n % 60:02d}.{n:06d}Z",
        request_id=f"req_{user}_{n}",
        decision_id=f"dec_{user}_{n}",
        who=who,
        what=What(api="chat.completions", model_requested=model, model_served=model),
        decision=DecisionRecord(allow=allow, reasons=reasons, policy_revision="rev1"),
        outcome=outcome,
    )


def settings(tmp: Path, **kw: object) -> AuditSettings:
    base: dict[str, object] = {"store": f"sqlite:///{tmp / 'audit.db'}", "checkpoint_every_s": 3600.0,
                              # no idle seal racing the tests' own lock-holding
                              "seal_idle_s": 3600.0}
    base.update(kw)
    return AuditSettings(**base)
