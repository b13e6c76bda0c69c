"""Authorization code + PKCE (GET /authorize, login_hint as the dev login) and the RFC 8693
token-exchange grant, against a real dev IdP on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp

from idp.testing import RunningIdp, running_idp
from tests.idp.conftest import basic, verify_against_jwks

TE = "urn:ietf:params:oauth:grant-type:token-exchange"
AT = "urn:ietf:params:oauth:token-type:access_token"
GATEWAY = basic("regogate-gateway", "regogate-gateway-secret")
REDIRECT = "http://127.0.0.1:33333/callback"
UPSTREAM = "https://tickets.example/mcp"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _authorize(http: aiohttp.ClientSession, idp: RunningIdp,
                     **params: str) -> tuple[int, dict[str, list[str]], str]:
    async with http.get(f"{idp.issuer}/authorize", params=params,
                        allow_redirects=False) as resp:
        location = resp.headers.get("Location", "")
        return resp.status, parse_qs(urlsplit(location).query), location


def _auth_params(challenge: str, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": "dev-cli", "redirect_uri": REDIRECT,
            "code_challenge": challenge, "code_challenge_method": "S256", "state": "st-1",
            "login_hint": "alice", **extra}


async def _token(http: aiohttp.ClientSession, idp: RunningIdp, data: dict[str, str],
                 headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with http.post(idp.token_endpoint, data=data, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_discovery_advertises_the_authorization_endpoint_pkce_and_both_new_grants(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{idp.issuer}/.well-known/oauth-authorization-server") as resp:
        doc = await resp.json()
    assert doc["authorization_endpoint"] == f"{idp.issuer}/authorize"
    assert doc["response_types_supported"] == ["code"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["authorization_response_iss_parameter_supported"] is True
    assert {"authorization_code", TE} <= set(doc["grant_types_supported"])


async def test_authorization_code_with_pkce_yields_an_audience_bound_user_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    verifier, challenge = _pkce()
    resource = "http://127.0.0.1:9/mcp"
    status, q, location = await _authorize(http, idp, **_auth_params(challenge, resource=resource))
    assert status == 302 and location.startswith(REDIRECT + "?")
    assert q["state"] == ["st-1"] and q["iss"] == [idp.issuer]
    data = {"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "resource": resource}
    status, body = await _token(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert status == 200, body
    claims = await verify_against_jwks(http, idp.jwks_uri, body["access_token"],
                                       issuer=idp.issuer, audience=resource)
    assert claims["sub"] == "alice" and claims["aud"] == resource
    assert claims["client_id"] == "dev-cli"
    # A code works once.
    status, body = await _token(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert (status, body["error"]) == (400, "invalid_grant")


async def test_a_wrong_pkce_verifier_is_invalid_grant(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, challenge = _pkce()
    _, q, _ = await _authorize(http, idp, **_auth_params(challenge))
    data = {"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": _pkce()[0]}
    status, body = await _token(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert (status, body["error"]) == (400, "invalid_grant")
    assert "PKCE" in body["error_description"]


async def test_a_token_request_may_not_widen_the_authorized_resource(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    verifier, challenge = _pkce()
    _, q, _ = await _authorize(http, idp, **_auth_params(challenge, resource="https://a.example/mcp"))
    data = {"grant_type": "authorization_code", "code": q["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": verifier, "resource": "https://b.example/mcp"}
    status, body = await _token(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert (status, body["error"]) == (400, "invalid_target")


async def test_authorize_without_pkce_or_with_plain_is_sent_back_as_invalid_request(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, challenge = _pkce()
    params = _auth_params(challenge, code_challenge_method="plain")
    status, q, _ = await _authorize(http, idp, **params)
    assert status == 302 and q["error"] == ["invalid_request"] and "code" not in q
    params.pop("code_challenge_method")
    params.pop("code_challenge")
    status, q, _ = await _authorize(http, idp, **params)
    assert q["error"] == ["invalid_request"]


async def test_authorize_refuses_an_unregistered_redirect_without_redirecting(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, challenge = _pkce()
    status, _, location = await _authorize(
        http, idp, **_auth_params(challenge, redirect_uri="https://evil.example/cb"))
    assert status == 400 and location == ""


async def test_authorize_for_an_unknown_user_is_access_denied(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    _, challenge = _pkce()
    _, q, _ = await _authorize(http, idp, **_auth_params(challenge, login_hint="mallory"))
    assert q["error"] == ["access_denied"] and q["state"] == ["st-1"]


async def test_authorize_with_a_repeated_parameter_is_refused(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    url = (f"{idp.issuer}/authorize?response_type=code&client_id=dev-cli&client_id=chat-ui"
           f"&redirect_uri={REDIRECT}&login_hint=alice")
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


async def test_token_exchange_issues_an_audience_bound_token_with_an_actor(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    subject = idp.token("alice", audience="http://127.0.0.1:9/mcp")
    data = {"grant_type": TE, "subject_token": subject, "subject_token_type": AT,
            "resource": UPSTREAM}
    status, body = await _token(http, idp, data, GATEWAY)
    assert status == 200, body
    assert body["issued_token_type"] == AT and body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 3600
    claims = await verify_against_jwks(http, idp.jwks_uri, body["access_token"],
                                       issuer=idp.issuer, audience=UPSTREAM)
    assert claims["sub"] == "alice" and claims["email"] == "alice@example.com"
    assert claims["aud"] == UPSTREAM
    assert claims["act"] == {"sub": "regogate-gateway"}
    assert body["access_token"] != subject


async def test_token_exchange_never_outlives_the_subject_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    subject = idp.token("alice", ttl_s=120)
    data = {"grant_type": TE, "subject_token": subject, "subject_token_type": AT,
            "audience": "tickets"}
    status, body = await _token(http, idp, data, GATEWAY)
    assert status == 200 and body["expires_in"] <= 120


async def test_token_exchange_of_an_opaque_subject_token_works(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": TE, "subject_token": idp.opaque_token("bob"),
            "subject_token_type": AT, "resource": UPSTREAM}
    status, body = await _token(http, idp, data, GATEWAY)
    assert status == 200
    claims = await verify_against_jwks(http, idp.jwks_uri, body["access_token"],
                                       issuer=idp.issuer, audience=UPSTREAM)
    assert claims["sub"] == "bob"


async def test_token_exchange_refuses_invalid_expired_and_id_token_subjects(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    for subject in ("not-a-token", idp.token("alice", ttl_s=-10), idp.id_token("alice")):
        data = {"grant_type": TE, "subject_token": subject, "subject_token_type": AT,
                "resource": UPSTREAM}
        status, body = await _token(http, idp, data, GATEWAY)
        assert (status, body["error"]) == (400, "invalid_request"), subject[:20]


async def test_token_exchange_without_a_target_is_invalid_target(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": TE, "subject_token": idp.token("alice"), "subject_token_type": AT}
    status, body = await _token(http, idp, data, GATEWAY)
    assert (status, body["error"]) == (400, "invalid_target")


async def test_token_exchange_is_only_for_clients_registered_for_it(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    data = {"grant_type": TE, "subject_token": idp.token("alice"), "subject_token_type": AT,
            "resource": UPSTREAM}
    status, body = await _token(http, idp, data, basic("dev-cli", "dev-cli-secret"))
    assert (status, body["error"]) == (400, "unauthorized_client")


async def test_token_exchange_requires_a_known_subject_token_type_and_no_actor(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    base = {"grant_type": TE, "subject_token": idp.token("alice"), "resource": UPSTREAM}
    for extra in ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"},
                  {"subject_token_type": AT, "actor_token": "x", "actor_token_type": AT},
                  {"subject_token_type": AT,
                   "requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"}):
        status, body = await _token(http, idp, {**base, **extra}, GATEWAY)
        assert (status, body["error"]) == (400, "invalid_request"), extra


async def test_exchange_targets_and_registered_redirects_come_from_the_users_file(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n  zoe: {email: zoe@example.com}\n"
        "clients:\n"
        "  gw2:\n    secret: gw2-secret\n"
        f"    grant_types: [\"{TE}\"]\n    exchange_targets: [\"{UPSTREAM}\"]\n"
        "  web:\n    secret: web-secret\n    grant_types: [authorization_code]\n"
        "    redirect_uris: [\"https://app.example/cb\"]\n")
    async with running_idp(tmp_path / "data", users=users) as idp:
        subject = idp.token("zoe", client="web")
        for target, expected in ((UPSTREAM, 200), ("https://elsewhere.example/mcp", 400)):
            data = {"grant_type": TE, "subject_token": subject, "subject_token_type": AT,
                    "resource": target}
            status, body = await _token(http, idp, data, basic("gw2", "gw2-secret"))
            assert status == expected, body
            if status == 400:
                assert body["error"] == "invalid_target"
        _, challenge = _pkce()
        params = {**_auth_params(challenge, login_hint="zoe"), "client_id": "web",
                  "redirect_uri": "https://app.example/cb"}
        status, q, location = await _authorize(http, idp, **params)
        assert status == 302 and location.startswith("https://app.example/cb?")
        assert "code" in q
