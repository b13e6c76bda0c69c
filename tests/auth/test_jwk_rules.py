"""Which published keys the gateway will verify with (pep/auth/keys.py build_key and the key
set), and how it reacts to IdP documents that are not usable: a key is used only when its
type, size, curve, use and ops all say "public signing key for a pinned algorithm"."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pep.auth.keys import MIN_RSA_BITS, build_key
from tests.auth.conftest import MakeAuth, bearer, rejected
from tests.auth.fakeidp import FakeIdp, SigningKey

ALL = frozenset({"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"})


def jwk_of(public: Any, algorithm: str, /, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(public))
    out.update(extra)
    return out


@pytest.fixture(scope="module")
def ec256() -> Any:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


def test_an_ec_key_must_match_the_curve_it_claims(ec256: Any) -> None:
    good = build_key(jwk_of(ec256, "ES256", kid="e"), ALL)
    assert good is not None and good.algorithms == frozenset({"ES256"})
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert build_key(jwk_of(p384, "ES384", kid="e3"), ALL) is not None
    lying = jwk_of(p384, "ES384", kid="e3")
    lying["crv"] = "P-256"  # claims P-256 but the coordinates are a P-384 point
    assert build_key(lying, ALL) is None
    unknown = jwk_of(ec256, "ES256", kid="e")
    unknown["crv"] = "secp256k1"
    assert build_key(unknown, ALL) is None


def test_an_rsa_key_under_the_minimum_size_is_not_used() -> None:
    small = rsa.generate_private_key(65537, MIN_RSA_BITS // 2).public_key()
    assert build_key(jwk_of(small, "RS256", kid="s"), ALL) is None


@pytest.mark.parametrize("change", [
    {"kid": 7}, {"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "verify"}, {"d": "AAAA"},
    {"kty": "oct"}, {"alg": "ES384"}, {"alg": 5},
])
def test_a_jwk_that_is_not_a_public_signing_key_for_a_pinned_alg_is_skipped(
    ec256: Any, change: dict[str, Any]
) -> None:
    jwk = {**jwk_of(ec256, "ES256", kid="e", alg="ES256"), **change}
    assert build_key(jwk, ALL) is None


def test_key_ops_with_verify_and_an_alg_inside_the_pins_are_used(ec256: Any) -> None:
    jwk = jwk_of(ec256, "ES256", kid="e", alg="ES256", key_ops=["verify"])
    assert build_key(jwk, ALL) is not None
    assert build_key(jwk, frozenset({"RS256"})) is None  # the issuer does not pin ES256
    assert build_key("not a dict", ALL) is None


async def test_a_key_published_without_kid_verifies_a_token_without_kid(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    no_kid = {k: v for k, v in rsa_keys[1].jwk().items() if k != "kid"}
    idp.keys = []  # the IdP publishes one key, without a kid
    idp.extra_jwks.append(no_kid)
    auth = await make_auth()
    token = jwt.encode(idp.claims(), rsa_keys[1].private, algorithm="RS256",
                       headers={"typ": "at+jwt"})
    assert (await auth.authenticate(bearer(token))).sub == "alice"
    assert len(auth.issuer_keys(idp.issuer).keys) == 1


async def test_without_kid_two_candidate_keys_are_ambiguous_and_refused(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    for k in rsa_keys[1:]:
        idp.extra_jwks.append({kk: v for kk, v in k.jwk().items() if kk != "kid"})
    auth = await make_auth()
    token = jwt.encode(idp.claims(), rsa_keys[1].private, algorithm="RS256",
                       headers={"typ": "at+jwt"})
    err = await rejected(auth, token)
    assert (err.status, err.code) == (401, "invalid_token")


async def test_two_keys_under_one_kid_are_both_unused(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    idp.extra_jwks.append({**rsa_keys[1].jwk(), "kid": rsa_keys[0].kid})
    idp.extra_jwks.append(rsa_keys[2].jwk())  # another, unambiguous key keeps the set usable
    auth = await make_auth()
    err = await rejected(auth, idp.token())
    assert (err.status, err.code) == (401, "invalid_token")
    assert list(auth.issuer_keys(idp.issuer).keys.by_kid) == [rsa_keys[2].kid]


async def test_a_jwks_without_a_keys_array_leaves_the_issuer_unready(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    from aiohttp import web

    from tests.auth.fakeidp import serve

    async def jwks(_: web.Request) -> web.Response:
        return web.json_response({"keys": "none"})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner, url = await serve(app)
    try:
        idp.issuer_jwks_override = f"{url}/jwks"
        auth = await make_auth()
        status = auth.ready()[1]["issuers"][idp.issuer]
        assert status["ready"] is False and "JWKS has no keys array" in status["last_error"]
    finally:
        await runner.cleanup()


async def test_discovery_naming_another_issuer_is_refused(make_auth: MakeAuth, idp: FakeIdp) -> None:
    idp.discovery_issuer = idp.issuer + "/evil"
    auth = await make_auth()
    status = auth.ready()[1]["issuers"][idp.issuer]
    assert status["ready"] is False
    assert "discovery document names a different issuer" in status["last_error"]


async def test_an_introspection_endpoint_comes_from_discovery(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"introspection": {"client_id": "gateway", "client_secret": "s"}})
    assert auth.issuer_keys(idp.issuer).introspection_endpoint == f"{idp.issuer}/introspect"
