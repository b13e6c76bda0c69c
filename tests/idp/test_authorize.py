"""GET/POST /authorize and the authorization_code grant: PKCE S256, state, nonce, exact
redirect URIs, the CSRF-safe login form, single-use codes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from idp.authorize import redirect_uri_matches
from idp.directory import DirectoryError, load_directory
from idp.testing import RunningIdp
from tests.idp.conftest import header_of, verify_against_jwks

CLIENT = "regogate-workspace"
REDIRECT = "http://127.0.0.1:8123/audit/callback"
VERIFIER = "v" * 64


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


def _params(**changes: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": CLIENT, "redirect_uri": REDIRECT,
        "scope": "openid profile", "state": "st-1", "nonce": "no-1",
        "code_challenge": create_s256_code_challenge(VERIFIER), "code_challenge_method": "S256"}
    params.update(changes)
    return {k: v for k, v in params.items() if v is not None}


async def _authorize(browser: aiohttp.ClientSession, idp: RunningIdp,
                     **changes: str | None) -> aiohttp.ClientResponse:
    url = f"{idp.issuer}/authorize?{urlencode(_params(**changes))}"
    async with browser.get(url, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def _login(browser: aiohttp.ClientSession, idp: RunningIdp, user: str = "erin",
                 form_changes: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    url = f"{idp.issuer}/authorize?{urlencode(_params())}"
    async with browser.get(url) as resp:
        page = await resp.text()
        assert resp.status == 200, page
        assert "NOT FOR PRODUCTION" in page
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    form = dict(re.findall(r"<input type=hidden name=(\w+) value=([^>\s]+)>", page))
    data = {**form, "username": user, "action": "approve", **(form_changes or {})}
    async with browser.post(f"{idp.issuer}/authorize", data=data, allow_redirects=False,
                            headers=headers or {}) as resp:
        await resp.read()
        return resp


def _query(location: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(location).query))


async def _redeem(http: aiohttp.ClientSession, idp: RunningIdp, code: str,
                  **changes: str) -> tuple[int, dict[str, Any]]:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER, "client_id": CLIENT, **changes}
    async with http.post(idp.token_endpoint, data=data) as resp:
        return resp.status, await resp.json()


async def test_the_code_flow_issues_an_id_token_and_an_access_token(
    idp: RunningIdp, browser: aiohttp.ClientSession
) -> None:
    resp = await _login(browser, idp)
    assert resp.status == 303
    q = _query(resp.headers["Location"])
    assert resp.headers["Location"].startswith(REDIRECT + "?")
    assert q["state"] == "st-1" and q["iss"] == idp.issuer
    status, body = await _redeem(browser, idp, q["code"])
    assert status == 200, body
    assert header_of(body["access_token"])["typ"] == "at+jwt"
    access = await verify_against_jwks(browser, idp.jwks_uri, body["access_token"],
                                       issuer=idp.issuer, audience="regogate")
    assert access["sub"] == "erin" and access["client_id"] == CLIENT
    assert header_of(body["id_token"])["typ"] == "JWT"
    id_claims = await verify_against_jwks(browser, idp.jwks_uri, body["id_token"],
                                          issuer=idp.issuer, audience=CLIENT)
    assert id_claims["nonce"] == "no-1" and id_claims["sub"] == "erin"


async def test_a_code_is_single_use(idp: RunningIdp, browser: aiohttp.ClientSession) -> None:
    code = _query((await _login(browser, idp)).headers["Location"])["code"]
    assert (await _redeem(browser, idp, code))[0] == 200
    status, body = await _redeem(browser, idp, code)
    assert status == 400 and body["error"] == "invalid_grant"
    assert "already used" in body["error_description"]


async def test_a_wrong_verifier_or_redirect_uri_spends_the_code(
    idp: RunningIdp, browser: aiohttp.ClientSession
) -> None:
    code = _query((await _login(browser, idp)).headers["Location"])["code"]
    status, body = await _redeem(browser, idp, code, code_verifier="w" * 64)
    assert status == 400 and "code_challenge" in body["error_description"]
    assert (await _redeem(browser, idp, code))[1]["error"] == "invalid_grant"  # spent
    code = _query((await _login(browser, idp)).headers["Location"])["code"]
    status, body = await _redeem(browser, idp, code,
                                 redirect_uri="http://127.0.0.1:9999/audit/callback")
    assert status == 400 and "redirect_uri" in body["error_description"]
    code = _query((await _login(browser, idp)).headers["Location"])["code"]
    status, body = await _redeem(browser, idp, code, code_verifier="short")
    assert status == 400 and "malformed" in body["error_description"]


async def test_a_public_client_cannot_use_other_grants_and_needs_all_parameters(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    async with http.post(idp.token_endpoint, data={
            "grant_type": "client_credentials", "client_id": CLIENT}) as resp:
        assert resp.status == 401 and (await resp.json())["error"] == "invalid_client"
    async with http.post(idp.token_endpoint, data={
            "grant_type": "authorization_code", "client_id": CLIENT}) as resp:
        body = await resp.json()
        assert resp.status == 400 and "code_verifier" in body["error_description"]
    # A confidential client may not drop its secret and pose as public.
    async with http.post(idp.token_endpoint, data={
            "grant_type": "authorization_code", "client_id": "dev-cli", "code": "x",
            "redirect_uri": REDIRECT, "code_verifier": VERIFIER}) as resp:
        assert resp.status == 401


@pytest.mark.parametrize("changes", [{"client_id": "nobody"}, {"client_id": "dev-cli"},
                                     {"redirect_uri": "https://evil.example/audit/callback"},
                                     {"redirect_uri": "http://127.0.0.1:8123/other"}])
async def test_an_unknown_client_or_redirect_uri_gets_a_page_never_a_redirect(
    idp: RunningIdp, browser: aiohttp.ClientSession, changes: dict[str, str]
) -> None:
    resp = await _authorize(browser, idp, **changes)
    assert resp.status == 400 and "Location" not in resp.headers


@pytest.mark.parametrize(("changes", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None, "code_challenge": None}, "invalid_request"),
    ({"code_challenge": "too-short"}, "invalid_request"),
    ({"state": None}, "invalid_request"),
    ({"nonce": None}, "invalid_request"),
    ({"scope": "profile"}, "invalid_scope"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
async def test_a_request_without_pkce_state_nonce_or_openid_is_refused_by_redirect(
    idp: RunningIdp, browser: aiohttp.ClientSession, changes: dict[str, str | None],
    error: str,
) -> None:
    resp = await _authorize(browser, idp, **changes)
    assert resp.status == 303
    assert resp.headers["Location"].startswith(REDIRECT)
    assert _query(resp.headers["Location"])["error"] == error


async def test_a_repeated_parameter_is_refused(
    idp: RunningIdp, browser: aiohttp.ClientSession
) -> None:
    url = f"{idp.issuer}/authorize?{urlencode(_params())}&state=again"
    async with browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 400 and "repeated" in await resp.text()


async def test_the_login_form_is_csrf_safe(idp: RunningIdp,
                                           browser: aiohttp.ClientSession) -> None:
    resp = await _login(browser, idp, form_changes={"csrf": "forged"})
    assert resp.status == 403
    resp = await _login(browser, idp, headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    resp = await _login(browser, idp, headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403
    resp = await _login(browser, idp, form_changes={"rid": "made-up"})
    assert resp.status == 400
    # A form posted by another browser (no binding cookie) is refused.
    url = f"{idp.issuer}/authorize?{urlencode(_params())}"
    async with browser.get(url) as got:
        form = dict(re.findall(r"<input type=hidden name=(\w+) value=([^>\s]+)>",
                               await got.text()))
    async with aiohttp.ClientSession() as other:
        async with other.post(f"{idp.issuer}/authorize", allow_redirects=False,
                              data={**form, "username": "erin", "action": "approve"}) as resp:
            assert resp.status == 403


async def test_a_cancelled_sign_in_redirects_with_access_denied(
    idp: RunningIdp, browser: aiohttp.ClientSession
) -> None:
    resp = await _login(browser, idp, form_changes={"action": "cancel"})
    q = _query(resp.headers["Location"])
    assert q["error"] == "access_denied" and q["state"] == "st-1" and "code" not in q
    resp = await _login(browser, idp, user="nobody")
    assert resp.status == 400


def test_loopback_redirect_uris_registered_without_a_port_accept_any_port() -> None:
    reg = "http://127.0.0.1/audit/callback"
    assert redirect_uri_matches(reg, "http://127.0.0.1:8080/audit/callback")
    assert redirect_uri_matches("https://gw.example/cb", "https://gw.example/cb")
    assert not redirect_uri_matches(reg, "http://127.0.0.1:8080/audit/callback/x")
    assert not redirect_uri_matches(reg, "http://127.0.0.2.nip.io:80/audit/callback")
    assert not redirect_uri_matches("https://gw.example/cb", "https://gw.example:444/cb")
    assert not redirect_uri_matches("http://localhost/cb", "http://localhost:1/cb")
    assert not redirect_uri_matches(reg, "http://user@127.0.0.1:1/audit/callback")


def test_a_public_client_may_only_use_the_code_grant(tmp_path: Path) -> None:
    users = tmp_path / "u.yaml"
    users.write_text("users: {}\nclients:\n  spa: {grant_types: [client_credentials]}\n")
    with pytest.raises(DirectoryError, match="public"):
        load_directory(users)
    users.write_text("users: {}\nclients:\n  spa: {grant_types: [authorization_code]}\n")
    with pytest.raises(DirectoryError, match="redirect_uris"):
        load_directory(users)
    users.write_text("users: {}\nclients:\n  spa: {grant_types: [authorization_code],"
                     " redirect_uris: ['ftp://x/cb']}\n")
    with pytest.raises(DirectoryError, match="absolute"):
        load_directory(users)
