"""Discovery document and JWKS."""

from __future__ import annotations

import aiohttp

from idp.testing import RunningIdp

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


async def test_discovery_document_names_the_endpoints_under_the_exact_issuer(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    async with http.get(idp.discovery_url) as resp:
        assert resp.status == 200
        doc = await resp.json()
    assert doc["issuer"] == idp.issuer
    assert not idp.issuer.endswith("/")
    assert idp.issuer.startswith("http://127.0.0.1:")
    assert doc["jwks_uri"] == f"{idp.issuer}/jwks"
    assert doc["token_endpoint"] == f"{idp.issuer}/token"
    assert doc["introspection_endpoint"] == f"{idp.issuer}/introspect"
    assert set(doc["grant_types_supported"]) == {
        "client_credentials", "urn:regogate:dev:user", "authorization_code",
        "urn:ietf:params:oauth:grant-type:token-exchange"}
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",  # public clients (PKCE), authorization_code only
    }
    assert doc["subject_types_supported"] == ["public"]
    assert doc["authorization_endpoint"] == f"{idp.issuer}/authorize"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True


async def test_jwks_publishes_public_keys_only_with_kid_alg_and_use(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    async with http.get(idp.jwks_uri) as resp:
        assert resp.status == 200
        assert "max-age" in resp.headers["Cache-Control"]
        body = await resp.json(content_type=None)
    assert len(body["keys"]) == 1
    key = body["keys"][0]
    assert not PRIVATE_JWK_MEMBERS & key.keys()
    assert key["kid"] == idp.active_kid
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kty"] == "RSA"
