"""pep/auth/verify.py step by step, through the real Authenticator and a loopback IdP: each
refusal has its own status, code and message (what a client and an operator are told), the
order of the checks holds, and the verified result carries the issuer's leeway."""

from __future__ import annotations

import json
import time

from pep.auth import Authenticator
from pep.errors import GatewayError
from tests.auth.conftest import MakeAuth, bearer, rejected
from tests.auth.fakeidp import FakeIdp, SigningKey, b64json, raw_token, sign_raw


def told(err: GatewayError) -> tuple[int, str, str]:
    return err.status, err.code, err.message


async def test_a_token_without_a_string_issuer_is_invalid(auth: Authenticator, idp: FakeIdp) -> None:
    header = json.dumps({"alg": "RS256", "kid": idp.keys[0].kid, "typ": "at+jwt"})
    for iss in (..., 3, None, [idp.issuer]):
        claims = idp.claims(iss=iss)
        err = await rejected(auth, sign_raw(idp.keys[0], header, json.dumps(claims)))
        assert told(err) == (401, "invalid_token", "token has no issuer")


async def test_an_untrusted_issuer_is_named_as_such(auth: Authenticator, idp: FakeIdp) -> None:
    err = await rejected(auth, idp.token(iss=idp.issuer + "/"))
    assert told(err) == (401, "untrusted_issuer", "token issuer is not trusted")


async def test_an_algorithm_the_issuer_does_not_pin_is_refused(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth(issuer={"algorithms": ["ES256"]})
    err = await rejected(auth, idp.token())
    assert told(err) == (401, "invalid_token", "token algorithm is not allowed")


async def test_the_required_typ_is_compared_normalised_on_both_sides(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth(issuer={"required_typ": "application/AT+JWT"})
    assert (await auth.authenticate(bearer(idp.token(typ="at+jwt")))).sub == "alice"
    for typ in ("JWT", None):
        err = await rejected(auth, idp.token(typ=typ))
        assert told(err) == (401, "invalid_token", "token type is not accepted")


async def test_without_required_typ_any_typ_is_accepted(auth: Authenticator, idp: FakeIdp) -> None:
    for typ in ("JWT", None, "at+jwt"):
        assert (await auth.authenticate(bearer(idp.token(typ=typ)))).sub == "alice"


async def test_a_bad_signature_is_refused_as_such(auth: Authenticator, idp: FakeIdp) -> None:
    head, body, _ = idp.token().split(".")
    other = idp.token(sub="mallory").split(".")[2]
    err = await rejected(auth, f"{head}.{body}.{other}")
    assert told(err) == (401, "invalid_token", "token signature is invalid")


async def test_the_signature_is_checked_before_the_claims(auth: Authenticator, idp: FakeIdp) -> None:
    # An expired token with a forged signature is a signature failure: claims of an
    # unverified token are never looked at.
    head, body, _ = idp.token(exp=int(time.time()) - 3600).split(".")
    other = idp.token().split(".")[2]
    err = await rejected(auth, f"{head}.{body}.{other}")
    assert err.message == "token signature is invalid"


async def test_claims_are_checked_before_the_id_token_rule(auth: Authenticator, idp: FakeIdp) -> None:
    err = await rejected(auth, idp.token(nonce="n", exp=int(time.time()) - 3600))
    assert err.code == "token_expired"
    err = await rejected(auth, idp.token(nonce="n", aud="someone-else"))
    assert err.code == "invalid_audience"


async def test_id_tokens_are_refused_unless_the_issuer_accepts_them(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth()
    err = await rejected(auth, idp.token(typ="JWT", nonce="n"))
    assert told(err) == (401, "id_token_not_accepted", "ID tokens are not access tokens")
    lenient = await make_auth(issuer={"accept_id_tokens": True})
    assert (await lenient.authenticate(bearer(idp.token(typ="JWT", nonce="n")))).sub == "alice"


async def test_an_unknown_kid_triggers_one_refetch_then_is_refused(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=0)
    before = idp.hits["jwks"]
    stranger = SigningKey("rsa-unknown", "RS256", rsa_keys[1].private)
    err = await rejected(auth, idp.token(stranger))
    assert told(err) == (401, "invalid_token", "token signing key is not known for this algorithm")
    assert idp.hits["jwks"] == before + 1


async def test_a_kid_of_the_wrong_key_type_for_the_algorithm_is_refused_without_refetch(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(issuer={"algorithms": ["RS256", "ES256"]})
    before = idp.hits["jwks"]
    # A known RSA kid claimed for ES256: the key exists, so no refetch; it cannot verify ES256.
    header = b64json({"alg": "ES256", "kid": rsa_keys[0].kid, "typ": "at+jwt"})
    token = raw_token(header, b64json(idp.claims()), "AAAA")
    err = await rejected(auth, token)
    assert told(err) == (401, "invalid_token", "token signing key is not known for this algorithm")
    assert idp.hits["jwks"] == before


async def test_keys_that_never_loaded_are_a_503_not_a_401(make_auth: MakeAuth, idp: FakeIdp) -> None:
    idp.down = True
    auth = await make_auth()
    err = await rejected(auth, idp.token())
    assert told(err) == (503, "idp_unavailable", "identity provider keys are unavailable")


async def test_a_verified_token_is_trusted_until_exp_plus_leeway(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth(issuer={"leeway_s": 30})
    exp = int(time.time()) + 120
    verified = await auth._verifier.verify(idp.token(exp=exp))
    assert verified.exp == exp + 30
    assert verified.principal.expires_at == exp
    assert verified.issuer_keys.issuer.issuer == idp.issuer


async def test_an_at_jwt_typ_header_overrides_id_token_claims(auth: Authenticator, idp: FakeIdp) -> None:
    # RFC 9068: a token that says at+jwt is an access token, whatever claims it carries.
    assert (await auth.authenticate(bearer(idp.token(typ="at+jwt", nonce="n")))).sub == "alice"


async def test_a_token_without_kid_never_triggers_a_refetch(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    import jwt

    idp.extra_jwks.append(rsa_keys[2].jwk())  # two RS256 keys: a token without kid is ambiguous
    auth = await make_auth(jwks_min_refresh_interval_s=0)
    before = idp.hits["jwks"]
    token = jwt.encode(idp.claims(), rsa_keys[1].private, algorithm="RS256",
                       headers={"typ": "at+jwt"})
    err = await rejected(auth, token)
    assert told(err) == (401, "invalid_token", "token signing key is not known for this algorithm")
    assert idp.hits["jwks"] == before
