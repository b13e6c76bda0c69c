"""Identity settings: trusted issuers, claim mapping, token caches, deny list."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from pep.settings_base import Frozen

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)


class ClaimMapping(Frozen):
    """Dotted paths into the verified claims (``realm_access.roles`` for Keycloak)."""

    subject: str = "sub"
    email: str = "email"
    name: str = "name"
    groups: str = "groups"
    roles: str = "roles"
    teams: str = "team"
    client: tuple[str, ...] = ("azp", "client_id")


class IntrospectionSettings(Frozen):
    """RFC 7662 introspection for opaque tokens (client authentication by secret)."""

    endpoint: str | None = None  # default: from discovery (introspection_endpoint)
    client_id: str
    client_secret: SecretStr
    cache_max_s: int = Field(300, gt=0)


class IssuerSettings(Frozen):
    issuer: str
    audiences: tuple[str, ...] = Field(min_length=1)
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    discovery: bool = True
    jwks_uri: str | None = None
    # Plain http is refused except for loopback addresses, unless explicitly allowed.
    allow_insecure_http: bool = False
    required_typ: str | None = None  # e.g. "at+jwt" (RFC 9068)
    leeway_s: int = Field(30, ge=0, le=300)
    claims: ClaimMapping = ClaimMapping()
    group_teams: dict[str, str] = Field(default_factory=dict)
    # A token with none of the subject-identifying user claims and sub == client id is a
    # client-credentials (service) token; these claims mark a token as a service token too.
    service_when: dict[str, str] = Field(default_factory=dict)
    introspection: IntrospectionSettings | None = None


class IdentitySettings(Frozen):
    issuers: tuple[IssuerSettings, ...] = Field(min_length=1)
    deny_list: Path | None = None
    max_token_bytes: int = Field(8192, gt=0)
    token_cache_size: int = Field(10_000, gt=0)
    jwks_min_refresh_interval_s: float = Field(10.0, ge=0)
    jwks_cache_min_s: int = Field(60, ge=0)
    jwks_cache_max_s: int = Field(3600, gt=0)
    # How long cached keys keep serving while the IdP is unreachable.
    jwks_stale_max_s: int = Field(24 * 3600, ge=0)
    http_timeout_s: float = Field(5.0, gt=0)
