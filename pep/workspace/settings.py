"""The ``workspace:`` settings slice: how the auditor workspace signs people in."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from pep.settings_base import Frozen


class WorkspaceSettings(Frozen):
    # The gateway's client registration at the IdP. None: browser sign-in is off (the
    # auditor API still takes bearer tokens).
    client_id: str | None = None
    # A confidential client's secret (``${file:/run/secrets/...}``); None: a public client,
    # PKCE alone (RFC 7636; OAuth 2.1 for browser-based apps).
    client_secret: SecretStr | None = None
    # Which configured identity issuer signs users in (default: the first one).
    issuer: str | None = None
    # Shown on the page as "Sign in with <issuer_name>" (default: the issuer URL's host).
    issuer_name: str | None = None
    # The callback URL registered at the IdP, e.g. https://gw.example.com/audit/callback.
    # None: derived from the request, on loopback addresses only (the dev set-up).
    redirect_uri: str | None = None
    scope: str = "openid profile email"
    # A session ends at the access token's exp, after this long without use, or after
    # session_max_s, whichever comes first.
    session_idle_s: float = Field(1800.0, gt=0)
    session_max_s: float = Field(12 * 3600.0, gt=0)
    max_sessions: int = Field(10_000, gt=0)
    # How long a started sign-in may take at the IdP.
    login_timeout_s: float = Field(600.0, gt=0)
    # "memory" (this process only) or redis://... (shared by every worker and replica).
    session_store: str = "memory"
    redis_password: SecretStr | None = None
    redis_key_prefix: str = "regogate:ws:"
    redis_timeout_s: float = Field(2.0, gt=0)

    @field_validator("session_store")
    @classmethod
    def _store(cls, store: str) -> str:
        if store != "memory" and not store.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("session_store must be memory or a redis://, rediss:// or"
                             " unix:// URL")
        return store

    @field_validator("redirect_uri")
    @classmethod
    def _absolute(cls, uri: str | None) -> str | None:
        if uri is not None and not (uri.startswith(("https://", "http://"))
                                    and uri.endswith("/audit/callback")):
            raise ValueError("redirect_uri must be an absolute http(s) URL ending in"
                             " /audit/callback")
        return uri

    @field_validator("scope")
    @classmethod
    def _openid(cls, scope: str) -> str:
        if "openid" not in scope.split():
            raise ValueError("scope must include openid (the sign-in needs an ID token)")
        return scope
