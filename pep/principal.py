"""Who is calling: the verified result of authentication, handed to policy and audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    issuer: str
    kind: Literal["user", "service"] = "user"
    email: str | None = None
    name: str | None = None
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    # The calling application (azp / client_id).
    client_id: str | None = None
    # RFC 8693 delegation: the "act" claim as verified (nested actors preserved).
    actor: dict[str, Any] | None = None
    token_id: str | None = None  # jti, when the issuer sets one
    expires_at: int | None = None
    # All verified claims, for policies that need more than the mapped fields.
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def team(self) -> str | None:
        return self.teams[0] if self.teams else None
