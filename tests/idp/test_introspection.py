"""POST /introspect (RFC 7662): client authentication, active and inactive tokens."""

from __future__ import annotations

from typing import Any

import aiohttp

from idp.testing import RunningIdp
from tests.idp.conftest import basic

GATEWAY = basic("regogate-gateway", "regogate-gateway-secret")


async def _introspect(
    http: aiohttp.ClientSession, idp: RunningIdp, token: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    headers = GATEWAY if headers is None else headers
    async with http.post(idp.introspection_endpoint, data={"token": token}, headers=headers) as r:
        return r.status, await r.json()


async def test_introspection_requires_client_authentication(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body = await _introspect(http, idp, idp.opaque_token("alice"), headers={})
    assert status == 401
    assert body["error"] == "invalid_client"
    assert "sub" not in body


async def test_introspection_with_a_wrong_secret_is_refused(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    headers = basic("regogate-gateway", "nope")
    status, body = await _introspect(http, idp, idp.opaque_token("alice"), headers=headers)
    assert status == 401
    assert "active" not in body


async def test_opaque_token_introspects_active_with_the_users_claims(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body = await _introspect(http, idp, idp.opaque_token("alice"))
    assert status == 200
    assert body["active"] is True
    assert body["sub"] == "alice"
    assert body["iss"] == idp.issuer
    assert body["groups"] == ["ml-team"]
    assert body["client_id"] == "dev-cli"
    assert body["token_type"] == "Bearer"


async def test_opaque_token_from_the_token_endpoint_introspects_active(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": "client_credentials", "token_format": "opaque"}
    headers = basic("batch-service", "batch-service-secret")
    async with http.post(idp.token_endpoint, data=data, headers=headers) as resp:
        token = (await resp.json())["access_token"]
    assert token.count(".") == 0
    _, body = await _introspect(http, idp, token)
    assert body["active"] is True
    assert body["sub"] == "batch-service"


async def test_our_jwt_access_token_introspects_active(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, body = await _introspect(http, idp, idp.token("bob"))
    assert body["active"] is True
    assert body["sub"] == "bob"
    assert body["team"] == "sales"


async def test_unknown_token_is_inactive_and_reveals_nothing(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    status, body = await _introspect(http, idp, "rgo_not-a-token-we-issued")
    assert status == 200
    assert body == {"active": False}


async def test_expired_token_is_inactive(idp: RunningIdp, http: aiohttp.ClientSession) -> None:
    _, jwt_body = await _introspect(http, idp, idp.token("alice", ttl_s=-10))
    _, opaque_body = await _introspect(http, idp, idp.opaque_token("alice", ttl_s=-10))
    assert jwt_body == {"active": False}
    assert opaque_body == {"active": False}


async def test_revoked_opaque_token_is_inactive(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    token = idp.opaque_token("alice")
    assert idp.revoke_opaque(token)
    _, body = await _introspect(http, idp, token)
    assert body == {"active": False}


async def test_id_token_is_not_an_active_access_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, body = await _introspect(http, idp, idp.id_token("alice"))
    assert body == {"active": False}


async def test_token_signed_by_a_removed_key_is_inactive(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    old = idp.token("alice")
    idp.rotate(remove_old=True)
    _, body = await _introspect(http, idp, old)
    assert body == {"active": False}
