"""Identity settings: trusted issuers, claim mapping, token caches, deny list."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

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
    # RFC 7662 makes ``aud`` optional; we require it to name one of our audiences unless
    # the IdP is known not to return it (then any active token of this issuer is accepted).
    require_audience: bool = True


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
    # Longest lifetime accepted for this issuer's tokens (exp - iat, and exp - now): a
    # token minted to live for years is refused even when correctly signed. None: no bound.
    max_token_lifetime_s: int | None = Field(None, gt=0)
    claims: ClaimMapping = ClaimMapping()
    group_teams: dict[str, str] = Field(default_factory=dict)
    # A token with none of the subject-identifying user claims and sub == client id is a
    # client-credentials (service) token; these claims mark a token as a service token too.
    service_when: dict[str, str] = Field(default_factory=dict)
    introspection: IntrospectionSettings | None = None
    # Google issues no JWT access tokens: its ID tokens (aud = our OAuth client id) are the
    # only verifiable credential. Off by default -- ID tokens are not access tokens.
    accept_id_tokens: bool = False

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algs: tuple[str, ...]) -> tuple[str, ...]:
        # GUIDE.md 3.1: HS*/none would let anyone holding the public key forge tokens.
        bad = [a for a in algs if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not algs:
            raise ValueError(
                f"algorithms must be a non-empty subset of {', '.join(ASYMMETRIC_ALGORITHMS)};"
                f" refused: {', '.join(bad) or '(empty)'}"
            )
        return algs

    @field_validator("audiences")
    @classmethod
    def _non_empty_audiences(cls, auds: tuple[str, ...]) -> tuple[str, ...]:
        if any(not a for a in auds):
            raise ValueError("audiences must be non-empty strings")
        return auds


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
    # Largest discovery / JWKS / introspection response we read.
    max_response_bytes: int = Field(1024 * 1024, gt=0)
    # Outstanding RFC 7662 calls at once; beyond this, opaque tokens get 503 (flood guard).
    max_concurrent_introspections: int = Field(32, gt=0)

    @field_validator("issuers")
    @classmethod
    def _unique_issuers(cls, issuers: tuple[IssuerSettings, ...]) -> tuple[IssuerSettings, ...]:
        seen = [i.issuer for i in issuers]
        if len(set(seen)) != len(seen):
            raise ValueError("each issuer may be configured only once")
        return issuers
