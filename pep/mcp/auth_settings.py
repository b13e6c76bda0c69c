"""Settings for the MCP gateway's authorization side (docs/mcp.md, "Authorization").

    mcp:
      resource: https://gateway.example/mcp        # McpResourceSettings (RFC 9728 / RFC 8707)
      servers:
        docs:
          auth: {type: static, headers: {Authorization: "Bearer ${file:/run/secrets/docs}"}}
        tickets:
          auth: {type: token_exchange, token_endpoint: https://idp.example/token,
                 client_id: regogate, client_secret: "${file:/run/secrets/te}",
                 resource: https://tickets.example/mcp}
        local:
          auth: {type: none}

The core settings tree (``pep.mcp.settings``) imports ``McpResourceSettings`` and
``UpstreamAuth`` from here. Secrets are ``SecretStr`` (printed as ``***``); their values come
from ``${file:...}`` / ``${ENV}`` interpolation in the config loader, never from a request.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from yarl import URL

from pep.settings_base import Frozen

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:jwt"

# Headers an upstream credential may never set: hop-by-hop and framing headers, and the
# MCP transport's own (the proxy owns those).
_RESERVED_HEADERS = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection", "accept",
    "mcp-session-id", "mcp-protocol-version", "cookie", "te", "upgrade",
})
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def check_url(value: str, what: str, *, allow_insecure_http: bool = False) -> str:
    """An absolute https URL (plain http only to a loopback host, or when allowed), with no
    fragment (RFC 8707 section 2) and no credentials in it."""
    from pep.auth.fetch import is_loopback_host  # noqa: PLC0415 - avoid aiohttp at import

    u = URL(value)
    if not u.is_absolute() or u.scheme not in ("https", "http") or not u.host:
        raise ValueError(f"{what} must be an absolute https URL, got {value!r}")
    if u.fragment or "#" in value:
        raise ValueError(f"{what} must not contain a fragment (RFC 8707 section 2)")
    if u.user or u.password:
        raise ValueError(f"{what} must not contain credentials")
    if u.scheme == "http" and not (allow_insecure_http or is_loopback_host(u.host)):
        raise ValueError(f"{what} {value!r} uses plain http to a non-loopback host: use https")
    return value


class McpResourceSettings(Frozen):
    """The gateway as an OAuth 2.1 resource server for MCP clients."""

    # The gateway's MCP resource identifier (RFC 8707 / RFC 9728 ``resource``): the URL
    # clients reach ``/mcp`` at, e.g. https://gateway.example/mcp. Tokens for MCP must carry
    # exactly this value in ``aud``. Configured, never derived from the Host header: a
    # client-chosen Host would otherwise choose which audience we accept.
    resource: str
    # Issuers named in the metadata's ``authorization_servers`` (each must be one of
    # ``identity.issuers``); default: every configured issuer.
    authorization_servers: tuple[str, ...] | None = None
    scopes_supported: tuple[str, ...] = ()
    resource_name: str = "regogate MCP gateway"
    resource_documentation: str | None = None
    # Metadata responses may be cached by clients this long.
    metadata_max_age_s: int = Field(300, ge=0)
    allow_insecure_http: bool = False

    @field_validator("resource")
    @classmethod
    def _resource_url(cls, value: str) -> str:
        u = URL(value)
        if u.query_string:
            raise ValueError("mcp.resource should not contain a query (RFC 8707 section 2)")
        return value

    @model_validator(mode="after")
    def _urls(self) -> "McpResourceSettings":
        check_url(self.resource, "resource", allow_insecure_http=self.allow_insecure_http)
        if self.resource_documentation is not None:
            check_url(self.resource_documentation, "resource_documentation",
                      allow_insecure_http=True)
        return self

    @property
    def origin(self) -> str:
        return str(URL(self.resource).origin())


class NoAuth(Frozen):
    """The upstream needs no credentials (or gets them out of band, e.g. a stdio server's
    environment). Still, the user's token is never forwarded."""

    type: Literal["none"] = "none"


class StaticAuth(Frozen):
    """Fixed per-server headers from configuration, e.g. ``Authorization: Bearer ${file:...}``
    or an ``X-Api-Key``. The same for every user: the upstream sees the gateway, not them."""

    type: Literal["static"]
    headers: dict[str, SecretStr] = Field(min_length=1)

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not name or not set(name) <= _TOKEN_CHARS:
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by the MCP proxy, not by credentials")
            raw = value.get_secret_value()
            if not raw or any(c in raw for c in "\r\n\0"):
                raise ValueError(f"header {name!r}: value must be non-empty, one line")
        return headers


class TokenExchangeAuth(Frozen):
    """RFC 8693 token exchange at the configured IdP: the user's (already verified) token is
    the ``subject_token``; the issued token is audience-bound to this upstream (``resource``
    and/or ``audience``) and is what the upstream sees."""

    type: Literal["token_exchange"]
    token_endpoint: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    client_auth: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    # RFC 8707 resource indicator (a URL) and/or RFC 8693 logical audience; at least one.
    resource: str | None = None
    audience: str | None = None
    scope: str | None = None
    subject_token_type: Literal[
        "urn:ietf:params:oauth:token-type:access_token", "urn:ietf:params:oauth:token-type:jwt"
    ] = ACCESS_TOKEN_TYPE
    # The header the issued token is sent in, as ``Bearer <token>``.
    header: str = "Authorization"
    timeout_s: float = Field(5.0, gt=0)
    # An issued token is reused until this long before it expires.
    refresh_before_s: float = Field(30.0, ge=0)
    # Without ``expires_in`` in the answer an issued token is reused for at most this long.
    default_ttl_s: float = Field(60.0, ge=0)
    cache_size: int = Field(10_000, gt=0)
    max_response_bytes: int = Field(64 * 1024, gt=0)
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _target(self) -> "TokenExchangeAuth":
        check_url(self.token_endpoint, "token_endpoint",
                  allow_insecure_http=self.allow_insecure_http)
        if self.resource is None and self.audience is None:
            raise ValueError("token_exchange needs resource (RFC 8707) or audience (RFC 8693)")
        if self.resource is not None:
            check_url(self.resource, "resource", allow_insecure_http=True)
        if self.header.lower() in _RESERVED_HEADERS or not set(self.header) <= _TOKEN_CHARS:
            raise ValueError(f"header {self.header!r} cannot carry the exchanged token")
        return self


UpstreamAuth = Annotated[NoAuth | StaticAuth | TokenExchangeAuth, Field(discriminator="type")]
