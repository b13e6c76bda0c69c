"""pep/auth/verify.py beyond the access-token path, for issue 18's mutation gate: the sign-in
ID-token check (OIDC Core 3.1.3.7) refusal by refusal with what each one tells the caller,
the per-call audience override (the MCP resource), keys that turn unusable while an
unknown kid is refetched (503, never a 401 that would blame the token), and a crypto-layer
exception during signature verification (a 401, never an accepted token)."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from jwt.algorithms import get_default_algorithms

from pep.auth import Authenticator
from pep.auth.claims import ClaimMapper
from pep.auth.jws import b64url_decode
from pep.auth.keys import IssuerKeys, KeySet, VerifyKey
from pep.auth.verify import JwtVerifier
from pep.errors import GatewayError
from tests.auth.conftest import MakeAuth, identity, issuer_conf
from tests.auth.fakeidp import FakeIdp, SigningKey, sign_raw

CLIENT = "chat-ui"
NONCE = "n-0123456789"


def id_claims(idp: FakeIdp, **changes: Any) -> dict[str, Any]:
    """An ID token's claims for CLIENT with NONCE (``...`` drops a claim)."""
    base = {"aud": CLIENT, "azp": ..., "scope": ..., "email": ..., "nonce": NONCE,
            "auth_time": int(time.time())}
    return idp.claims(**{**base, **changes})


def signed(idp: FakeIdp, claims: dict[str, Any], *, typ: str | None = "JWT",
           key: SigningKey | None = None) -> str:
    """``claims`` signed exactly as given (``idp.token`` would re-add its defaults)."""
    key = key or idp.keys[0]
    header = {"alg": key.alg, "kid": key.kid, **({} if typ is None else {"typ": typ})}
    return sign_raw(key, json.dumps(header), json.dumps(claims))


def id_token(idp: FakeIdp, *, typ: str | None = "JWT", **changes: Any) -> str:
    return signed(idp, id_claims(idp, **changes), typ=typ)


async def verified(auth: Authenticator, idp: FakeIdp, token: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"issuer": idp.issuer, "client_id": CLIENT, "nonce": NONCE, **kw}
    return await auth.verify_id_token(token, **args)


async def refused(auth: Authenticator, idp: FakeIdp, token: str, **kw: Any) -> tuple[int, str, str]:
    with pytest.raises(GatewayError) as info:
        await verified(auth, idp, token, **kw)
    return info.value.status, info.value.code, info.value.message


async def test_an_id_token_for_us_returns_a_copy_of_its_claims(auth: Authenticator, idp: FakeIdp) -> None:
    claims = id_claims(idp)
    got = await verified(auth, idp, signed(idp, claims))
    assert got == claims
    # typ is optional on an ID token; a single-element audience list without azp is ours too.
    assert (await verified(auth, idp, id_token(idp, typ=None, aud=[CLIENT])))["aud"] == [CLIENT]


@pytest.mark.parametrize("typ", ["at+jwt", "application/AT+JWT"])
async def test_an_access_token_is_refused_as_an_id_token(
    auth: Authenticator, idp: FakeIdp, typ: str
) -> None:
    assert await refused(auth, idp, id_token(idp, typ=typ)) == (
        401, "invalid_id_token", "an access token is not an ID token")


async def test_the_id_token_must_come_from_the_issuer_the_sign_in_used(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    other = "https://other.example"
    auth = await make_auth(issuers=[issuer_conf(idp), {"issuer": other, "audiences": ["x"],
                                                       "discovery": False}])
    # Signed by a trusted issuer, but not the one this sign-in went to.
    assert await refused(auth, idp, id_token(idp), issuer=other) == (
        401, "untrusted_issuer", "ID token is from another issuer")
    # The issuer asked for is named by the token but is not configured at all.
    untrusted = "https://untrusted.example"
    assert await refused(auth, idp, id_token(idp, iss=untrusted), issuer=untrusted) == (
        401, "untrusted_issuer", "token issuer is not trusted")


async def test_an_id_token_is_held_to_the_same_signature_and_pins(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth()
    forged = SigningKey(idp.keys[0].kid, "RS256", rsa_keys[2].private)
    assert await refused(auth, idp, signed(idp, id_claims(idp), key=forged)) == (
        401, "invalid_token", "token signature is invalid")
    pinned = await make_auth(issuer={"algorithms": ["ES256"]})
    assert await refused(pinned, idp, id_token(idp)) == (
        401, "invalid_token", "token algorithm is not allowed")


async def test_the_issuers_required_typ_is_for_access_tokens_only(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth(issuer={"required_typ": "at+jwt"})
    assert (await verified(auth, idp, id_token(idp, typ="JWT")))["sub"] == "alice"


async def test_the_issuers_leeway_and_lifetime_bound_apply_to_id_tokens(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    now = int(time.time())
    auth = await make_auth(issuer={"leeway_s": 120, "max_token_lifetime_s": 3600})
    assert (await verified(auth, idp, id_token(idp, iat=now - 600, exp=now - 60)))["sub"] == "alice"
    assert await refused(auth, idp, id_token(idp, iat=now - 600, exp=now - 130)) == (
        401, "token_expired", "token has expired")
    assert await refused(auth, idp, id_token(idp, iat=now, exp=now + 7200)) == (
        401, "token_lifetime_exceeded", "token lifetime exceeds this issuer's maximum")


async def test_the_audience_is_our_client_not_the_gateways_audiences(
    auth: Authenticator, idp: FakeIdp
) -> None:
    assert await refused(auth, idp, id_token(idp, aud="regogate")) == (
        401, "invalid_audience", "token is not meant for this gateway")
    assert await refused(auth, idp, id_token(idp, aud=...)) == (
        401, "invalid_audience", "token has no audience")


AZP = (401, "invalid_id_token", "ID token azp is not this client")


async def test_azp_must_name_us_when_present_or_when_there_are_several_audiences(
    auth: Authenticator, idp: FakeIdp
) -> None:
    ok = await verified(auth, idp, id_token(idp, aud=[CLIENT, "other"], azp=CLIENT))
    assert ok["azp"] == CLIENT
    assert (await verified(auth, idp, id_token(idp, azp=CLIENT)))["azp"] == CLIENT
    assert await refused(auth, idp, id_token(idp, aud=[CLIENT, "other"])) == AZP
    assert await refused(auth, idp, id_token(idp, aud=[CLIENT, "other"], azp="other")) == AZP
    assert await refused(auth, idp, id_token(idp, azp="other")) == AZP


NONCE_MISMATCH = (401, "nonce_mismatch", "ID token nonce does not match the sign-in")


@pytest.mark.parametrize("nonce", [..., None, 7, ["n"], "", NONCE + "x", NONCE[:-1]])
async def test_the_nonce_must_be_the_sign_ins_exactly(
    auth: Authenticator, idp: FakeIdp, nonce: Any
) -> None:
    assert await refused(auth, idp, id_token(idp, nonce=nonce)) == NONCE_MISMATCH


async def test_a_non_ascii_nonce_is_compared_not_crashed(auth: Authenticator, idp: FakeIdp) -> None:
    nonce = "n\u00e9-\u4e2d"
    assert (await verified(auth, idp, id_token(idp, nonce=nonce), nonce=nonce))["nonce"] == nonce
    assert await refused(auth, idp, id_token(idp, nonce=nonce), nonce="n\u00e9-x") == NONCE_MISMATCH


@pytest.mark.parametrize("sub", [..., None, "", 42])
async def test_an_id_token_needs_a_string_subject(auth: Authenticator, idp: FakeIdp, sub: Any) -> None:
    assert await refused(auth, idp, id_token(idp, sub=sub)) == (
        401, "invalid_id_token", "ID token has no subject")


async def test_an_id_token_without_a_string_issuer_is_refused_before_its_signature(
    auth: Authenticator, idp: FakeIdp
) -> None:
    assert await refused(auth, idp, id_token(idp, typ=None, iss=...)) == (
        401, "untrusted_issuer", "ID token is from another issuer")


# -- the audience override (MCP resource, RFC 8707) ----------------------------------------------


async def test_an_audience_override_replaces_the_issuers_audiences(
    auth: Authenticator, idp: FakeIdp
) -> None:
    resource = ("https://mcp.example/tools",)
    ok = await auth._verifier.verify(idp.token(aud=resource[0]), resource)
    assert ok.principal.sub == "alice"
    with pytest.raises(GatewayError) as info:
        await auth._verifier.verify(idp.token(), resource)  # aud "regogate": ours, not the resource's
    assert (info.value.code, info.value.message) == (
        "invalid_audience", "token is not meant for this gateway")


# -- keys that go stale during the unknown-kid refetch -------------------------------------------


async def test_keys_gone_stale_during_an_unknown_kid_refetch_are_a_503(
    idp: FakeIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey]
) -> None:
    settings = identity([issuer_conf(idp)], jwks_min_refresh_interval_s=0, jwks_stale_max_s=60)
    # The key cache's own (monotonic) clock: a day passes once the IdP has been asked twice,
    # i.e. during the refetch the unknown kid triggers; the IdP is down by then.
    def clock() -> float:
        return 1000.0 + (86_400.0 if idp.hits["discovery"] >= 2 else 0.0)

    keys = IssuerKeys(settings.issuers[0], settings, session, clock=clock)
    assert await keys.refresh() and keys.usable()
    verifier = JwtVerifier({idp.issuer: (keys, ClaimMapper(settings.issuers[0]))})
    idp.down = True
    stranger = SigningKey("rsa-rotated", "RS256", rsa_keys[1].private)
    with pytest.raises(GatewayError) as info:
        await verifier.verify(idp.token(stranger))
    assert (info.value.status, info.value.code, info.value.message) == (
        503, "idp_unavailable", "identity provider keys are unavailable")
    assert idp.hits["discovery"] == 2 and not keys.usable()


# -- a key object the algorithm's code cannot use -------------------------------------------------


@pytest.mark.parametrize("alg, signer, holder", [
    ("ES256", "ec", "rsa"),  # PyJWT's ECDSA code reads key.curve: an RSA key has none
    ("RS256", "rsa", "ed"),  # RSA verify(sig, msg, padding, hash) on an Ed25519 key
    ("EdDSA", "ed", "ec"),  # Ed25519-style verify(sig, msg) on an EC key
])
async def test_a_crypto_layer_exception_during_signature_verification_is_an_invalid_signature(
    idp: FakeIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
    ec_signing_key: SigningKey, ed_signing_key: SigningKey, alg: str, signer: str, holder: str,
) -> None:
    """A key set entry whose key object does not fit the algorithm it is listed for (build_key
    never makes one; the verifier must not trust that): PyJWT's verify raises instead of
    returning False, and the token is refused as badly signed, never accepted or a 500."""
    by_type = {"rsa": rsa_keys[0], "ec": ec_signing_key, "ed": ed_signing_key}
    settings = identity([issuer_conf(idp, algorithms=sorted({"RS256", alg}))])
    keys = IssuerKeys(settings.issuers[0], settings, session)
    assert await keys.refresh() and keys.usable()
    held = by_type[holder].public
    keys.keys = KeySet(by_kid={"odd": VerifyKey("odd", held, frozenset({alg}), "odd")})
    verifier = JwtVerifier({idp.issuer: (keys, ClaimMapper(settings.issuers[0]))})
    token = signed(idp, idp.claims(), typ="at+jwt", key=SigningKey("odd", alg, by_type[signer].private))
    h64, p64, s64 = token.split(".")
    with pytest.raises((AttributeError, TypeError)):  # raises, rather than returning False
        get_default_algorithms()[alg].verify(f"{h64}.{p64}".encode(), held, b64url_decode(s64, "s"))
    with pytest.raises(GatewayError) as info:
        await verifier.verify(token)
    assert (info.value.status, info.value.code, info.value.message) == (
        401, "invalid_token", "token signature is invalid")
