"""Verifying one compact JWS access token against its (configured) issuer.

Order matters: strict parse -> issuer chosen by exact ``iss`` lookup -> algorithm checked
against the issuer's pinned list -> key found by ``kid`` (dictionary lookup only) and its
type must support that algorithm -> signature verified by PyJWT's algorithm implementation
-> registered claims -> ID-token refusal -> mapping. Nothing from the token header selects
a key source or an algorithm family.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jwt.algorithms import Algorithm, get_default_algorithms

from pep.auth.claims import (
    ClaimMapper,
    check_audience,
    check_times,
    looks_like_id_token,
    normalise_typ,
)
from pep.auth.jws import ParsedJWS, parse_compact
from pep.auth.keys import IssuerKeys, VerifyKey
from pep.auth.settings import ASYMMETRIC_ALGORITHMS, IssuerSettings
from pep.errors import Unauthorized, Unavailable
from pep.principal import Principal


@dataclass(frozen=True, slots=True)
class Verified:
    principal: Principal
    exp: float
    issuer_keys: IssuerKeys
    key: VerifyKey


class JwtVerifier:
    def __init__(self, issuers: dict[str, tuple[IssuerKeys, ClaimMapper]],
                 clock: Callable[[], float] = time.time) -> None:
        self._issuers = issuers
        self._clock = clock
        defaults = get_default_algorithms()
        self._algorithms: dict[str, Algorithm] = {
            a: defaults[a] for a in ASYMMETRIC_ALGORITHMS if a in defaults
        }

    async def verify(self, token: str, audiences: tuple[str, ...] | None = None) -> Verified:
        """``audiences``, when given, replaces the issuer's accepted audiences (the MCP
        resource: RFC 8707 says a token is for one resource server, not any of ours)."""
        jws = parse_compact(token)
        claims = jws.payload
        keys, mapper, issuer, key = await self._signed_by_trusted_issuer(jws)
        now = self._clock()
        exp = check_times(claims, issuer.leeway_s, now, issuer.max_token_lifetime_s)
        check_audience(claims.get("aud"), issuer.audiences if audiences is None else audiences)
        if not issuer.accept_id_tokens and looks_like_id_token(jws.header.get("typ"), claims):
            raise Unauthorized("ID tokens are not access tokens", code="id_token_not_accepted")
        return Verified(mapper.principal(claims, exp), exp + issuer.leeway_s, keys, key)

    async def verify_id_token(self, token: str, *, issuer: str, client_id: str,
                              nonce: str) -> dict[str, Any]:
        """An OIDC ID token (Core 3.1.3.7) from a trusted issuer, for our client, with our
        nonce: same strict parsing, pinned algorithms and keys as access tokens. Returns
        its claims. Never a credential by itself: the sign-in uses the access token."""
        jws = parse_compact(token)
        claims = jws.payload
        typ = jws.header.get("typ")
        if isinstance(typ, str) and normalise_typ(typ) == "at+jwt":
            raise Unauthorized("an access token is not an ID token", code="invalid_id_token")
        if claims.get("iss") != issuer:
            raise Unauthorized("ID token is from another issuer", code="untrusted_issuer")
        _, _, trusted, _ = await self._signed_by_trusted_issuer(jws, check_typ=False)
        check_times(claims, trusted.leeway_s, self._clock(), trusted.max_token_lifetime_s)
        check_audience(claims.get("aud"), (client_id,))
        aud, azp = claims.get("aud"), claims.get("azp")
        if (isinstance(aud, list) and len(aud) > 1 or azp is not None) and azp != client_id:
            raise Unauthorized("ID token azp is not this client", code="invalid_id_token")
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise Unauthorized("ID token nonce does not match the sign-in", code="nonce_mismatch")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise Unauthorized("ID token has no subject", code="invalid_id_token")
        return dict(claims)

    async def _signed_by_trusted_issuer(
        self, jws: ParsedJWS, *, check_typ: bool = True
    ) -> tuple[IssuerKeys, ClaimMapper, IssuerSettings, VerifyKey]:
        claims = jws.payload
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise Unauthorized("token has no issuer", code="invalid_token")
        found = self._issuers.get(iss)  # exact, case-sensitive: no prefix/normalisation
        if found is None:
            raise Unauthorized("token issuer is not trusted", code="untrusted_issuer")
        keys, mapper = found
        issuer = keys.issuer
        alg = jws.alg
        if alg not in issuer.algorithms or alg not in self._algorithms:
            raise Unauthorized("token algorithm is not allowed", code="invalid_token")
        typ = jws.header.get("typ")
        if check_typ and issuer.required_typ is not None and (
            typ is None or normalise_typ(typ) != normalise_typ(issuer.required_typ)
        ):
            raise Unauthorized("token type is not accepted", code="invalid_token")

        key = await self._key_for(keys, jws.kid, alg)
        try:
            ok = self._algorithms[alg].verify(jws.signing_input, key.key, jws.signature)
        except Exception:  # noqa: BLE001 -- any crypto-layer failure is a bad signature
            ok = False
        if not ok:
            raise Unauthorized("token signature is invalid", code="invalid_token")
        return keys, mapper, issuer, key

    @staticmethod
    async def _key_for(keys: IssuerKeys, kid: str | None, alg: str) -> VerifyKey:
        if not keys.usable():
            raise Unavailable("identity provider keys are unavailable", code="idp_unavailable")
        key = keys.lookup(kid, alg)
        if key is None and kid is not None and kid not in keys.keys.by_kid:
            # Possibly a freshly rotated key: one rate-limited, single-flight refetch.
            await keys.refetch_for_unknown_kid(kid)
            if not keys.usable():
                raise Unavailable("identity provider keys are unavailable", code="idp_unavailable")
            key = keys.lookup(kid, alg)
        if key is None:
            raise Unauthorized("token signing key is not known for this algorithm", code="invalid_token")
        return key
