"""The dev IdP's RFC 8693 token-exchange grant. NOT FOR PRODUCTION.

A client registered for it trades a valid access token this issuer signed (``subject_token``)
for one with a new audience (``resource`` and/or ``audience``), the same user claims, an
``act`` claim naming the exchanging client (section 4.1, nesting any earlier actor) and a
lifetime no longer than the subject's. The gateway uses it so an upstream MCP server gets a
token bound to it, never the user's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from idp.directory import Client
from idp.tokens import TokenIssuer

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
# Claims a new token gets afresh rather than from the subject token.
_FRESH = frozenset({"iss", "aud", "iat", "nbf", "exp", "jti", "client_id", "azp", "act",
                    "scope", "cnf"})


class OAuthError(Exception):
    """An RFC 6749 5.2 error answer (the server's middleware renders it)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


def absolute_uri(value: str) -> bool:
    """An RFC 8707 resource: an absolute URI without a fragment."""
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path)) and "#" not in value


def token_exchange_claims(tokens: TokenIssuer, subject: dict[str, Any] | None, client: Client,
                          form: Mapping[str, str]) -> dict[str, Any]:
    """The claims of the exchanged token; ``subject`` is the active subject token's claims
    (None when it is not an active access token of this issuer)."""
    if not form.get("subject_token"):
        raise OAuthError(400, "invalid_request", "subject_token is required")
    if form.get("subject_token_type") not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE):
        raise OAuthError(400, "invalid_request", "subject_token_type must be access_token or jwt")
    if form.get("requested_token_type", ACCESS_TOKEN_TYPE) not in (ACCESS_TOKEN_TYPE,
                                                                   JWT_TOKEN_TYPE):
        raise OAuthError(400, "invalid_request", "only access tokens can be requested")
    if "actor_token" in form or "actor_token_type" in form:
        raise OAuthError(400, "invalid_request", "actor tokens are not supported")
    targets = [t for t in (form.get("resource"), form.get("audience")) if t]
    if not targets:
        raise OAuthError(400, "invalid_target", "resource or audience is required")
    if form.get("resource") and not absolute_uri(form["resource"]):
        raise OAuthError(400, "invalid_target", "resource must be an absolute URI")
    if client.exchange_targets and any(t not in client.exchange_targets for t in targets):
        raise OAuthError(400, "invalid_target", "this client may not obtain tokens for that target")
    if subject is None:
        # RFC 8693 2.2.2: an invalid subject token is invalid_request.
        raise OAuthError(400, "invalid_request", "subject_token is not an active access token")
    now = int(time.time())
    remaining = int(subject["exp"]) - now
    if remaining <= 0:
        raise OAuthError(400, "invalid_request", "subject_token has expired")
    claims = {k: v for k, v in subject.items() if k not in _FRESH}
    claims.update(tokens.base_claims(str(subject["sub"]), targets[0] if len(targets) == 1
                                     else targets, min(tokens.ttl_s, remaining)))
    actor: dict[str, Any] = {"sub": client.client_id}
    if isinstance(subject.get("act"), dict):
        actor["act"] = subject["act"]  # RFC 8693 4.1: prior actors nest
    claims["act"] = actor
    claims.update(client_id=client.client_id, azp=client.client_id,
                  scope=form.get("scope") or subject.get("scope") or client.scope)
    return claims
