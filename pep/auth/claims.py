"""Verified claims -> checks every issuer needs -> ``Principal``.

Registered-claim rules (GUIDE.md 3.2), all type-strict: a claim of the wrong JSON type is a
401, never a crash and never coerced (``"exp": "9999999999"`` is refused, as is ``true``).

ID tokens are refused as access tokens unless the issuer sets ``accept_id_tokens``. A JWT
counts as an ID token when its header ``typ`` is not ``at+jwt`` and any of:
``nonce``, ``at_hash`` or ``c_hash`` is present (OIDC Core 2/3.1.3.6: ID-token-only claims);
Keycloak's ``typ`` claim is ``ID``; or it is addressed to the very client that obtained it
(``aud`` == ``azp``, a single audience) with ``auth_time`` and no ``scope``/``scp``.
With ``required_typ`` set, the header ``typ`` must equal it (RFC 9068 ``at+jwt``, with or
without the ``application/`` prefix), which excludes ID tokens by itself.

Service (client-credentials) tokens get ``kind="service"`` when any of:
``sub`` equals the client id (Okta, RFC 9068 section 2.2), ``sub`` is ``<client id>@clients``
(Auth0), or every claim in the issuer's ``service_when`` matches (value ``"*"``: present;
otherwise equal to, or contained in a list claim).
"""

from __future__ import annotations

import math
from typing import Any

from pep.auth.settings import IssuerSettings
from pep.errors import Unauthorized
from pep.principal import Principal

_ID_TOKEN_ONLY = ("nonce", "at_hash", "c_hash")


def _bad(message: str, code: str = "invalid_token") -> Unauthorized:
    return Unauthorized(message, code=code)


def _numeric(claims: dict[str, Any], name: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required or name in claims:
            raise _bad(f"token claim {name!r} is missing" if name not in claims
                       else f"token claim {name!r} must be a number")
        return None
    # bool is an int subclass in Python; JSON true is not a NumericDate.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(f"token claim {name!r} must be a number")
    return float(value)


def _string_or_list(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _bad(f"token claim {name!r} must be a string or a list of strings")


def normalise_typ(typ: str) -> str:
    typ = typ.lower()
    return typ.removeprefix("application/")


def check_times(claims: dict[str, Any], leeway: float, now: float,
                max_lifetime: float | None = None) -> float:
    """exp/iat required, nbf honoured, lifetime bounded when configured; returns exp."""
    exp = _numeric(claims, "exp", True)
    iat = _numeric(claims, "iat", True)
    nbf = _numeric(claims, "nbf", False)
    assert exp is not None and iat is not None
    if now >= exp + leeway:
        raise _bad("token has expired", "token_expired")
    if nbf is not None and now + leeway < nbf:
        raise _bad("token is not valid yet", "token_not_yet_valid")
    if now + leeway < iat:
        raise _bad("token was issued in the future", "token_not_yet_valid")
    check_lifetime(exp, iat, now, max_lifetime, leeway)
    return exp


def check_lifetime(exp: float, iat: float | None, now: float, max_lifetime: float | None,
                   leeway: float) -> None:
    """Refuse a token meant to live longer than the issuer's ``max_token_lifetime_s``.

    Both readings count: as issued (exp - iat) and as remaining (exp - now, which also
    catches a back-dated or absent iat); the leeway covers clock skew on the second only,
    since exp - iat involves no clock of ours.
    """
    if max_lifetime is None:
        return
    if (iat is not None and exp - iat > max_lifetime) or exp - now > max_lifetime + leeway:
        raise _bad("token lifetime exceeds this issuer's maximum", "token_lifetime_exceeded")


def check_audience(aud: Any, ours: tuple[str, ...]) -> None:
    if aud is None:
        raise _bad("token has no audience", "invalid_audience")
    if not any(a in ours for a in _string_or_list(aud, "aud")):
        raise _bad("token is not meant for this gateway", "invalid_audience")


def looks_like_id_token(header_typ: str | None, claims: dict[str, Any]) -> bool:
    if header_typ is not None and normalise_typ(header_typ) == "at+jwt":
        return False
    if any(c in claims for c in _ID_TOKEN_ONLY) or claims.get("typ") == "ID":
        return True
    azp, aud = claims.get("azp"), claims.get("aud")
    single = aud if isinstance(aud, str) else aud[0] if isinstance(aud, list) and len(aud) == 1 else None
    return (
        azp is not None and single == azp and "auth_time" in claims
        and "scope" not in claims and "scp" not in claims
    )


class ClaimMapper:
    """Per-issuer claim mapping, compiled once (dotted paths split up front)."""

    def __init__(self, issuer: IssuerSettings) -> None:
        self.issuer = issuer
        m = issuer.claims
        self._subject = self._path(m.subject)
        self._email = self._path(m.email)
        self._name = self._path(m.name)
        self._groups = self._path(m.groups)
        self._roles = self._path(m.roles)
        self._teams = self._path(m.teams)
        self._client = [self._path(p) for p in m.client]
        self._service = [(self._path(k), v) for k, v in issuer.service_when.items()]

    @staticmethod
    def _path(path: str) -> tuple[str, tuple[str, ...]]:
        return path, tuple(path.split("."))

    @staticmethod
    def lookup(claims: dict[str, Any], path: tuple[str, tuple[str, ...]]) -> Any:
        # A literal key wins: Auth0/Entra namespace custom claims as URLs full of dots.
        full, parts = path
        if full in claims:
            return claims[full]
        node: Any = claims
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def _str(self, claims: dict[str, Any], path: tuple[str, tuple[str, ...]]) -> str | None:
        value = self.lookup(claims, path)
        if value is None or isinstance(value, str):
            return value
        raise _bad(f"token claim {path[0]!r} must be a string")

    def _strings(self, claims: dict[str, Any], path: tuple[str, tuple[str, ...]]) -> tuple[str, ...]:
        value = self.lookup(claims, path)
        return () if value is None else _string_or_list(value, path[0])

    def _is_service(self, claims: dict[str, Any], sub: str, client_id: str | None) -> bool:
        if client_id is not None and sub in (client_id, f"{client_id}@clients"):
            return True
        if not self._service:
            return False
        for path, want in self._service:
            value = self.lookup(claims, path)
            if value is None:
                return False
            if want == "*":
                continue
            if not (value == want or (isinstance(value, list) and want in value)):
                return False
        return True

    def principal(self, claims: dict[str, Any], exp: float | None) -> Principal:
        sub = self._str(claims, self._subject)
        if not sub:
            raise _bad("token has no subject")
        client_id = None
        for path in self._client:
            client_id = self._str(claims, path)
            if client_id:
                break
        groups = self._strings(claims, self._groups)
        teams = list(self._strings(claims, self._teams))
        for group in groups:
            team = self.issuer.group_teams.get(group)
            if team is not None and team not in teams:
                teams.append(team)
        actor = claims.get("act")
        if actor is not None and not isinstance(actor, dict):
            raise _bad("token claim 'act' must be an object")
        jti = claims.get("jti")
        if jti is not None and not isinstance(jti, str):
            raise _bad("token claim 'jti' must be a string")
        return Principal(
            sub=sub,
            issuer=self.issuer.issuer,
            kind="service" if self._is_service(claims, sub, client_id) else "user",
            email=self._str(claims, self._email),
            name=self._str(claims, self._name),
            groups=groups,
            roles=self._strings(claims, self._roles),
            teams=tuple(teams),
            client_id=client_id,
            actor=actor,
            token_id=jti,
            expires_at=None if exp is None else int(exp),
            claims=claims,
        )
