"""The dev IdP's authorization-code (with PKCE) and token-exchange grants. NOT FOR PRODUCTION.

Authorization code (RFC 6749 4.1, PKCE RFC 7636 S256 only, as OAuth 2.1 and the MCP
authorization spec require; RFC 9207 ``iss`` in the redirect; RFC 8707 ``resource``):
``GET /authorize`` signs the user in **without a password**: ``login_hint`` names the user.
That is the dev stand-in for a login page, so an MCP client's standard OAuth flow can run
unattended in tests.

Token exchange (RFC 8693): a client registered for it trades a valid access token this
issuer signed (``subject_token``) for one with a new audience (``resource`` and/or
``audience``), the same user claims, an ``act`` claim naming the exchanging client
(section 4.1, nesting any earlier actor) and a lifetime no longer than the subject's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from idp.directory import AUTHORIZATION_CODE, Client
from idp.tokens import TokenIssuer, UnknownUserError

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
CODE_TTL_S = 60
MAX_CODES = 1000
_PKCE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 4.1 / 4.2
# Claims a new token gets afresh rather than from the subject token.
_FRESH = frozenset({"iss", "aud", "iat", "nbf", "exp", "jti", "client_id", "azp", "act",
                    "scope", "cnf"})


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass(frozen=True, slots=True)
class AuthCode:
    client_id: str
    redirect_uri: str
    challenge: str
    username: str
    resource: str | None
    scope: str | None
    expires_at: float


class CodeStore:
    """One-time authorization codes in memory, bounded, keyed by SHA-256 of the code."""

    def __init__(self) -> None:
        self._codes: OrderedDict[bytes, AuthCode] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, code: AuthCode) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            self._codes[hashlib.sha256(value.encode()).digest()] = code
            while len(self._codes) > MAX_CODES:
                self._codes.popitem(last=False)
        return value

    def holds(self, value: str) -> bool:
        """Whether ``value`` is a live code of this store (the login page's codes are not)."""
        with self._lock:
            return hashlib.sha256(value.encode()).digest() in self._codes

    def take(self, value: str) -> AuthCode | None:
        with self._lock:
            code = self._codes.pop(hashlib.sha256(value.encode()).digest(), None)
        if code is None or code.expires_at <= time.time():
            return None
        return code


def _is_loopback_http(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def redirect_allowed(client: Client, uri: str | None) -> bool:
    if not uri or "#" in uri:
        return False
    return uri in client.redirect_uris or _is_loopback_http(uri)


def _absolute_uri(value: str) -> bool:
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path)) and "#" not in value


def _single(query: Mapping[str, str], counts: Mapping[str, int]) -> None:
    repeated = [name for name, n in counts.items() if n > 1]
    if repeated:  # RFC 6749 3.1: parameters MUST NOT repeat
        raise OAuthError(400, "invalid_request", f"parameter {repeated[0]!r} repeated")


def authorization_redirect(tokens: TokenIssuer, codes: CodeStore, query: Mapping[str, str],
                           counts: Mapping[str, int]) -> str:
    """The Location to send the user agent to. Errors about the client or the redirect URI
    are raised (shown to the user, never redirected: RFC 6749 4.1.2.1); the rest go back to
    the client in the redirect."""
    _single(query, counts)
    client = tokens.directory.clients.get(query.get("client_id", ""))
    if client is None:
        raise OAuthError(400, "invalid_request", "unknown client_id")
    redirect_uri = query.get("redirect_uri")
    if not redirect_allowed(client, redirect_uri):
        raise OAuthError(400, "invalid_request", "redirect_uri is not registered for this client")
    assert redirect_uri is not None

    def back(**params: str) -> str:
        if "state" in query:
            params["state"] = query["state"]
        params["iss"] = tokens.issuer  # RFC 9207
        return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"

    if AUTHORIZATION_CODE not in client.grant_types:
        return back(error="unauthorized_client", error_description="grant not allowed")
    if query.get("response_type") != "code":
        return back(error="unsupported_response_type", error_description="only code")
    challenge = query.get("code_challenge", "")
    if query.get("code_challenge_method") != "S256" or not _PKCE.fullmatch(challenge):
        return back(error="invalid_request", error_description="PKCE with S256 is required")
    resource = query.get("resource")
    if resource is not None and not _absolute_uri(resource):
        return back(error="invalid_target", error_description="resource must be an absolute URI")
    username = query.get("login_hint", "")
    if not username:
        return back(error="login_required", error_description="login_hint names the dev user")
    try:
        tokens.user(username)
    except UnknownUserError:
        return back(error="access_denied", error_description="unknown user")
    code = codes.issue(AuthCode(client.client_id, redirect_uri, challenge, username, resource,
                                query.get("scope") or None, time.time() + CODE_TTL_S))
    return back(code=code)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_code_claims(tokens: TokenIssuer, codes: CodeStore, client: Client,
                              form: Mapping[str, str]) -> dict[str, Any]:
    code = codes.take(form.get("code", ""))
    # One answer for unknown, expired, replayed or someone else's code.
    if code is None or code.client_id != client.client_id:
        raise OAuthError(400, "invalid_grant", "authorization code is invalid or expired")
    if form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError(400, "invalid_grant", "redirect_uri does not match the authorization")
    verifier = form.get("code_verifier", "")
    if not _PKCE.fullmatch(verifier) or not hmac.compare_digest(_s256(verifier), code.challenge):
        raise OAuthError(400, "invalid_grant", "PKCE code_verifier does not match")
    resource = form.get("resource") or code.resource
    if code.resource is not None and resource != code.resource:
        # RFC 8707 2.2: the token request may not widen what was authorized.
        raise OAuthError(400, "invalid_target", "resource differs from the authorization")
    if resource is not None and not _absolute_uri(resource):
        raise OAuthError(400, "invalid_target", "resource must be an absolute URI")
    return tokens.user_claims(code.username, client=client.client_id, audience=resource,
                              scope=code.scope)


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
    if form.get("resource") and not _absolute_uri(form["resource"]):
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
