"""Claims and signing: RFC 9068 access tokens, client-credentials tokens, OIDC ID tokens.

Access tokens carry ``typ: at+jwt`` (RFC 9068 section 2.1) so a verifier can tell them from
ID tokens (``typ: JWT``, ``aud`` = the client), which must never be accepted as access tokens.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64encode as b64url

from idp.directory import Client, Directory, User
from idp.keys import SUPPORTED_ALGS, KeyRing

ACCESS_TOKEN_TYP = "at+jwt"
ID_TOKEN_TYP = "JWT"
DEFAULT_AUDIENCE = "regogate"
DEFAULT_TTL_S = 3600
DEFAULT_CLIENT = "dev-cli"


class UnknownUserError(LookupError):
    pass


class UnknownClientError(LookupError):
    pass


class TokenIssuer:
    """Mints tokens for one issuer string with the key ring's active key."""

    def __init__(
        self,
        keys: KeyRing,
        directory: Directory,
        issuer: str,
        *,
        audience: str = DEFAULT_AUDIENCE,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        self.keys = keys
        self.directory = directory
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = ttl_s

    # -- lookups ---------------------------------------------------------------------------

    def user(self, username: str) -> User:
        try:
            return self.directory.users[username]
        except KeyError:
            raise UnknownUserError(f"unknown user {username!r}") from None

    def client(self, client_id: str) -> Client:
        try:
            return self.directory.clients[client_id]
        except KeyError:
            raise UnknownClientError(f"unknown client {client_id!r}") from None

    # -- claims ----------------------------------------------------------------------------

    def base_claims(self, sub: str, aud: str | list[str], ttl_s: int | None) -> dict[str, Any]:
        """iss, sub, aud, iat, nbf, exp, jti for a new token (token exchange builds on it)."""
        return self._base(sub, aud, ttl_s)

    def _base(self, sub: str, aud: str | list[str], ttl_s: int | None) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + (self.ttl_s if ttl_s is None else ttl_s),
            "jti": secrets.token_urlsafe(16),
        }

    def user_claims(
        self,
        username: str,
        *,
        client: str = DEFAULT_CLIENT,
        audience: str | list[str] | None = None,
        ttl_s: int | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        user, app = self.user(username), self.client(client)
        claims = user.claims()
        claims.update(self._base(user.sub, audience or self.audience, ttl_s))
        claims.update(client_id=app.client_id, azp=app.client_id, scope=scope or app.scope)
        return claims

    def service_claims(
        self,
        client: str,
        *,
        audience: str | list[str] | None = None,
        ttl_s: int | None = None,
        scope: str | None = None,
    ) -> dict[str, Any]:
        app = self.client(client)
        claims = self._base(app.client_id, audience or self.audience, ttl_s)
        claims.update(client_id=app.client_id, azp=app.client_id, scope=scope or app.scope)
        if app.roles:
            claims["roles"] = list(app.roles)
        return claims

    def id_token_claims(
        self,
        username: str,
        *,
        client: str = DEFAULT_CLIENT,
        nonce: str | None = None,
        ttl_s: int | None = None,
    ) -> dict[str, Any]:
        user, app = self.user(username), self.client(client)
        claims = user.claims()
        # OIDC Core 2: an ID token's audience is the client, never the resource server.
        claims.update(self._base(user.sub, app.client_id, ttl_s))
        claims.update(azp=app.client_id, auth_time=claims["iat"])
        claims["nonce"] = nonce or secrets.token_urlsafe(12)
        return claims

    # -- signing ---------------------------------------------------------------------------

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        typ: str | None = ACCESS_TOKEN_TYP,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign ``claims`` with the active key. ``header`` entries are added verbatim (tests
        use this for hostile tokens: ``jku``, ``crit``, relabelled ``alg``...); ``typ=None``
        leaves ``typ`` out."""
        key = self.keys.snapshot().active
        hdr: dict[str, Any] = {"alg": key.alg, "kid": key.kid}
        if typ is not None:
            hdr["typ"] = typ
        if header:
            hdr.update(header)
            return self.sign_raw(_json(hdr), _json(dict(claims)), signing_alg=key.alg)
        return jwt.encode(hdr, dict(claims), key, algorithms=[str(key.alg)])

    def sign_raw(self, header: bytes, payload: bytes, *, signing_alg: str | None = None) -> str:
        """Compact JWS over exact header and payload bytes (duplicate JSON keys and all),
        signed by the active key with ``signing_alg`` (default: the key's own), whatever
        the header claims. For hostile-token tests only; real tokens go through ``sign``."""
        key = self.keys.snapshot().active
        alg = JWSRegistry.algorithms[signing_alg or str(key.alg)]
        signing_input = b64url(header) + b"." + b64url(payload)
        return (signing_input + b"." + b64url(alg.sign(signing_input, key))).decode()

    def user_token(
        self,
        username: str,
        *,
        claims: Mapping[str, Any] | None = None,
        drop: Iterable[str] = (),
        **opts: Any,
    ) -> str:
        return self.sign(_edit(self.user_claims(username, **opts), claims, drop))

    def service_token(
        self,
        client: str,
        *,
        claims: Mapping[str, Any] | None = None,
        drop: Iterable[str] = (),
        **opts: Any,
    ) -> str:
        return self.sign(_edit(self.service_claims(client, **opts), claims, drop))

    def id_token(self, username: str, **opts: Any) -> str:
        return self.sign(self.id_token_claims(username, **opts), typ=ID_TOKEN_TYP)

    # -- verification (introspection of our own JWTs) ----------------------------------

    def verify_access_token(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token this issuer signed and that is valid now, else None.
        ID tokens and tokens of another issuer string are not active access tokens."""
        try:
            decoded = jwt.decode(
                token, self.keys.snapshot().keyset, algorithms=list(SUPPORTED_ALGS)
            )
        except (JoseError, ValueError, TypeError):
            return None
        header, claims = decoded.header, decoded.claims
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf", 0)
        if (
            header.get("typ") != ACCESS_TOKEN_TYP
            or claims.get("iss") != self.issuer
            or not isinstance(exp, int | float)
            or not isinstance(nbf, int | float)
            or exp <= now
            or nbf > now
        ):
            return None
        return dict(claims)


def _edit(
    base: dict[str, Any], overrides: Mapping[str, Any] | None, drop: Iterable[str]
) -> dict[str, Any]:
    out = {**base, **(overrides or {})}
    for name in drop:
        out.pop(name, None)
    return out


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
