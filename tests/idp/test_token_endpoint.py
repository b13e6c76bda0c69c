"""POST /token: client authentication, grants and their errors (RFC 6749 section 5.2)."""

from __future__ import annotations

from typing import Any

import aiohttp

from idp.testing import RunningIdp
from tests.idp.conftest import basic, verify_against_jwks

CC = {"grant_type": "client_credentials"}
USER_GRANT = "urn:regogate:dev:user"


async def _post(
    http: aiohttp.ClientSession, idp: RunningIdp, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with http.post(idp.token_endpoint, data=data, headers=headers or {}) as resp:
        return resp.status, await resp.json(), resp


async def test_client_credentials_with_basic_auth_returns_a_service_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body, resp = await _post(http, idp, CC, basic("batch-service", "batch-service-secret"))
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert resp.headers["Cache-Control"] == "no-store"
    claims = await verify_against_jwks(
        http, idp.jwks_uri, body["access_token"], issuer=idp.issuer, audience="regogate"
    )
    assert claims["sub"] == "batch-service"


async def test_client_credentials_with_post_auth_returns_a_service_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {**CC, "client_id": "dev-cli", "client_secret": "dev-cli-secret"}
    status, body, _ = await _post(http, idp, data)
    assert status == 200
    claims = await verify_against_jwks(
        http, idp.jwks_uri, body["access_token"], issuer=idp.issuer, audience="regogate"
    )
    assert claims["sub"] == claims["client_id"] == "dev-cli"


async def test_wrong_client_secret_is_401_invalid_client(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body, resp = await _post(http, idp, CC, basic("batch-service", "wrong"))
    assert status == 401
    assert body["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert "wrong" not in str(body)


async def test_unknown_client_gets_the_same_answer_as_a_wrong_secret(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, wrong_secret, _ = await _post(http, idp, CC, basic("batch-service", "wrong"))
    status, unknown, _ = await _post(http, idp, CC, basic("nobody", "wrong"))
    assert status == 401
    assert unknown == wrong_secret


async def test_missing_client_authentication_is_401(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await _post(http, idp, CC)
    assert status == 401
    assert body["error"] == "invalid_client"


async def test_two_client_authentication_methods_at_once_are_refused(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {**CC, "client_id": "dev-cli", "client_secret": "dev-cli-secret"}
    status, body, _ = await _post(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert status == 400
    assert body["error"] == "invalid_request"


async def test_malformed_basic_credentials_are_401(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await _post(http, idp, CC, {"Authorization": "Basic !!!not-base64"})
    assert status == 401
    assert body["error"] == "invalid_client"


async def test_user_grant_returns_that_users_access_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": USER_GRANT, "username": "erin"}
    status, body, _ = await _post(http, idp, data, basic("chat-ui", "chat-ui-secret"))
    assert status == 200
    claims = await verify_against_jwks(
        http, idp.jwks_uri, body["access_token"], issuer=idp.issuer, audience="regogate"
    )
    assert claims["sub"] == "erin"
    assert claims["groups"] == ["auditors"]
    assert claims["team"] == "compliance"
    assert claims["azp"] == "chat-ui"


async def test_user_grant_for_an_unknown_user_is_invalid_grant(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": USER_GRANT, "username": "mallory"}
    status, body, _ = await _post(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert status == 400
    assert body["error"] == "invalid_grant"
    assert "access_token" not in body


async def test_user_grant_without_username_is_invalid_request(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": USER_GRANT}
    status, body, _ = await _post(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert status == 400
    assert body["error"] == "invalid_request"


async def test_audience_parameter_sets_aud(idp: RunningIdp, http: aiohttp.ClientSession) -> None:
    data = {"grant_type": USER_GRANT, "username": "alice", "audience": "api-two"}
    _, body, _ = await _post(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    claims = await verify_against_jwks(
        http, idp.jwks_uri, body["access_token"], issuer=idp.issuer, audience="api-two"
    )
    assert claims["aud"] == "api-two"


async def test_unsupported_grant_type_is_refused(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": "password", "username": "alice", "password": "x"}
    status, body, _ = await _post(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert status == 400
    assert body["error"] == "unsupported_grant_type"


async def test_client_may_only_use_its_registered_grants(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await _post(http, idp, CC, basic("chat-ui", "chat-ui-secret"))
    assert status == 400
    assert body["error"] == "unauthorized_client"


async def test_json_body_is_refused_as_invalid_request(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        idp.token_endpoint, json=CC, headers=basic("batch-service", "batch-service-secret")
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


async def test_repeated_parameter_is_invalid_request(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = [("grant_type", "client_credentials"), ("grant_type", "client_credentials")]
    status, body, _ = await _post(http, idp, data, basic("batch-service", "batch-service-secret"))
    assert status == 400
    assert body["error"] == "invalid_request"


async def test_oversized_body_is_refused_without_a_500(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {**CC, "scope": "x" * (128 * 1024)}
    status, body, _ = await _post(http, idp, data, basic("batch-service", "batch-service-secret"))
    assert status == 413
    assert body["error"] == "invalid_request"
