"""Access tokens (RFC 9068), service tokens and ID tokens: header and claims."""

from __future__ import annotations

import aiohttp
import jwt

from idp.testing import RunningIdp
from tests.idp.conftest import header_of, verify_against_jwks


async def test_user_access_token_has_rfc9068_header_and_verifies_against_jwks(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.token("alice")
    header = header_of(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] == idp.active_kid
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="regogate"
    )
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert claims["groups"] == ["ml-team"]
    assert claims["team"] == "research"
    assert claims["client_id"] == claims["azp"] == "dev-cli"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] <= claims["iat"]
    assert claims["jti"]
    assert "scope" in claims
    assert "roles" not in claims


async def test_roles_from_the_users_file_are_in_the_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.token("carol")
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="regogate"
    )
    assert claims["groups"] == ["admins"]
    assert claims["team"] == "platform"
    assert claims["roles"] == ["admin"]


async def test_each_token_gets_a_fresh_jti(idp: RunningIdp) -> None:
    first = idp.user_claims("bob")
    second = idp.user_claims("bob")
    assert first["jti"] != second["jti"]


async def test_audience_and_ttl_options_change_the_claims(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.token("bob", audience="other-api", ttl_s=120, client="chat-ui")
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="other-api"
    )
    assert claims["exp"] - claims["iat"] == 120
    assert claims["azp"] == "chat-ui"


async def test_service_token_has_the_client_as_subject_and_no_user_claims(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.service_token("batch-service")
    assert header_of(token)["typ"] == "at+jwt"
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="regogate"
    )
    assert claims["sub"] == claims["client_id"] == claims["azp"] == "batch-service"
    assert not {"email", "name", "groups", "team"} & claims.keys()
    assert claims["roles"] == ["batch"]


async def test_id_token_is_typed_jwt_with_the_client_as_audience_and_a_nonce(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.id_token("alice", nonce="n-0S6")
    assert header_of(token)["typ"] == "JWT"
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="dev-cli"
    )
    assert claims["aud"] == "dev-cli"
    assert claims["nonce"] == "n-0S6"
    assert "client_id" not in claims


async def test_claim_overrides_and_drops_let_tests_build_broken_tokens(idp: RunningIdp) -> None:
    token = idp.token("alice", claims={"exp": "soon"}, drop=["sub"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] == "soon"
    assert "sub" not in claims


async def test_extra_header_entries_are_signed_verbatim_for_hostile_token_tests(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.sign(
        idp.user_claims("alice"), header={"crit": ["x-unknown"], "x-unknown": 1, "jku": "http://h"}
    )
    header = header_of(token)
    assert header["crit"] == ["x-unknown"]
    assert header["jku"] == "http://h"
    # Still a genuine signature by the active key: only the header's content is hostile.
    jwks = jwt.PyJWKSet.from_dict(idp.jwks)
    signing_input, _, signature = token.rpartition(".")
    key = jwks[header["kid"]]
    algo = jwt.get_algorithm_by_name("RS256")
    assert algo.verify(signing_input.encode(), key.key, jwt.utils.base64url_decode(signature))


async def test_sign_raw_keeps_duplicate_claims_in_the_payload(idp: RunningIdp) -> None:
    payload = b'{"sub":"alice","sub":"carol"}'
    token = idp.sign_raw(b'{"alg":"RS256","typ":"at+jwt"}', payload)
    assert jwt.utils.base64url_decode(token.split(".")[1]) == payload
