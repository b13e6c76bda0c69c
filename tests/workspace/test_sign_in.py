"""The workspace sign-in end to end over HTTP: a real dev IdP, a real gateway, aiohttp as the
browser (cookie jar, no redirects followed, so each step is visible)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from pep.workspace.routes import WORKSPACE
from tests.audit.workspace import WorkspaceClient, workspace_http
from tests.harness import Gateway, running_gateway


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    q.update(changes)
    return urlunsplit(parts._replace(query=urlencode(q)))


async def _records(gw: Gateway, event: str) -> list[dict[str, Any]]:
    return [r for r in await gw.audit_records() if r["event"] == event]


def _set_cookies(resp: aiohttp.ClientResponse) -> dict[str, str]:
    out = {}
    for value in resp.headers.getall("Set-Cookie", ()):
        out[value.split("=", 1)[0]] = value
    return out


async def test_an_auditor_signs_in_and_reads_the_trail_with_the_session(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        state = await ws.sign_in("erin")
        assert state["signed_in"] is True
        assert state["user"] == {"subject": "erin", "issuer": gw.idp.issuer,
                                 "name": "Erin Engel", "email": "erin@example.com"}
        status, doc = await ws.get_json("/audit/v1/events")
        assert status == 200
        events = [r["event"] for r in doc["data"]]
        assert events[:2] == ["audit.read", "session.login"]
        read = doc["data"][0]
        # The same Principal a bearer token gives: verified claims, the workspace client.
        assert read["who"]["subject"] == "erin" and read["who"]["groups"] == ["auditors"]
        assert read["who"]["client_id"] == "regogate-workspace"
        assert read["decision"]["allow"] is True
        login = (await _records(gw, "session.login"))[0]
        assert login["what"]["api"] == "audit.read" and login["outcome"]["status"] == 303


async def test_cookies_are_httponly_strict_and_scoped_to_audit(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        async with ws.http.get(f"{gw.url}/audit/login", allow_redirects=False) as resp:
            login_cookie = _set_cookies(resp)["regogate_ws_login"]
            authorize = resp.headers["Location"]
        # Lax: it must survive the IdP's top-level redirect back to the callback.
        assert "HttpOnly" in login_cookie and "SameSite=Lax" in login_cookie
        assert "Path=/audit/callback" in login_cookie and "Secure" not in login_cookie
        q = dict(parse_qsl(urlsplit(authorize).query))
        assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
        assert q["state"] and q["nonce"] and q["client_id"] == "regogate-workspace"
        assert q["redirect_uri"] == f"{gw.url}/audit/callback"
        callback = await ws.idp_login(authorize, "erin")
        async with ws.http.get(callback, allow_redirects=False) as resp:
            assert resp.status == 303
            cookies = _set_cookies(resp)
        session = cookies["regogate_ws"]
        assert "HttpOnly" in session and "SameSite=Strict" in session
        assert "Path=/audit;" in session + ";" and "Secure" not in session  # loopback: no TLS
        assert "Max-Age=" in session
        assert "Max-Age=0" in cookies["regogate_ws_login"]  # the pending sign-in is spent


async def test_the_session_cookie_is_secure_when_not_served_on_loopback(tmp_path: Path) -> None:
    config = {"workspace": {"redirect_uri": "https://gw.example.com/audit/callback"}}
    async with running_gateway(tmp_path, config=config) as gw, workspace_http(gw.url) as ws:
        async with ws.http.get(f"{gw.url}/audit/login", allow_redirects=False,
                               headers={"Host": "gw.example.com"}) as resp:
            assert resp.status == 302
            assert "Secure" in _set_cookies(resp)["regogate_ws_login"]
            q = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
        assert q["redirect_uri"] == "https://gw.example.com/audit/callback"


async def test_the_redirect_uri_is_never_derived_from_a_non_loopback_host(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        res = await ws.get(f"{gw.url}/audit/login", headers={"Host": "evil.example"})
        assert res.status == 503 and "workspace.redirect_uri" in res.text
        assert res.location is None


async def test_a_wrong_state_is_refused(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        callback = await ws.idp_login(await ws.start(), "erin")
        res = await ws.get(_with_query(callback, state="attacker-state"))
        assert res.status == 400 and "state_mismatch" in res.text
        assert ws.session_cookie() is None
        # The pending sign-in is gone too: the right state afterwards is refused as well.
        res = await ws.get(callback)
        assert res.status == 400 and "login_state_missing" in res.text
        failures = await _records(gw, "auth.failure")
        assert [f["extra"]["code"] for f in failures] == ["state_mismatch", "login_state_missing"]


async def test_a_callback_in_a_browser_that_did_not_start_the_sign_in_is_refused(
    tmp_path: Path,
) -> None:
    """Login CSRF: an attacker's own code and state, delivered to the victim's browser."""
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as attacker:
        callback = await attacker.idp_login(await attacker.start(), "bob")
        async with workspace_http(gw.url) as victim:
            res = await victim.get(callback)
            assert res.status == 400 and "login_state_missing" in res.text
            assert victim.session_cookie() is None


async def test_a_code_from_another_sign_in_fails_pkce_and_is_refused(tmp_path: Path) -> None:
    """Code injection: a code bound to one PKCE challenge, redeemed with another verifier."""
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as a, \
            workspace_http(gw.url) as b:
        stolen = dict(parse_qsl(urlsplit(await a.idp_login(await a.start(), "erin")).query))
        own = await b.idp_login(await b.start(), "erin")
        res = await b.get(_with_query(own, code=stolen["code"]))
        assert res.status == 401 and "code_refused" in res.text and "invalid_grant" in res.text
        assert b.session_cookie() is None


async def test_a_replayed_code_is_refused(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        first = await ws.idp_login(await ws.start(), "erin")
        assert (await ws.get(first)).status == 303
        used = dict(parse_qsl(urlsplit(first).query))["code"]
        second = await ws.idp_login(await ws.start(), "erin")
        res = await ws.get(_with_query(second, code=used))
        assert res.status == 401 and "invalid_grant" in res.text


async def test_an_idp_error_and_a_foreign_issuer_are_refused(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        cancelled = await ws.idp_login(await ws.start(), "erin", action="cancel")
        assert "error=access_denied" in cancelled
        res = await ws.get(cancelled)
        assert res.status == 401 and "access_denied" in res.text
        callback = await ws.idp_login(await ws.start(), "erin")
        res = await ws.get(_with_query(callback, iss="https://other-idp.example"))
        assert res.status == 400 and "issuer_mismatch" in res.text


async def test_a_non_auditor_gets_a_refusal_page_and_no_session(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        res = await ws.get(await ws.idp_login(await ws.start(), "bob"))
        assert res.status == 403
        assert "Bob Berg" in res.text and "api_not_allowed" in res.text
        assert ws.session_cookie() is None
        deny = (await _records(gw, "policy.deny"))[0]
        assert deny["who"]["subject"] == "bob" and deny["what"]["api"] == "audit.read"


async def _signed_in(gw: Gateway, ws: WorkspaceClient) -> None:
    await ws.sign_in("erin")
    assert (await ws.get_json("/audit/v1/verify"))[0] == 200


async def test_an_idle_session_expires(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        await _signed_in(gw, ws)
        sessions = gw.app[WORKSPACE].sessions
        sessions.clock = lambda: time.time() + sessions.idle_s + 1
        status, body = await ws.get_json("/audit/v1/events")
        assert status == 401 and body["error"]["code"] == "session_expired"
        # Gone for good, and the page is told why.
        assert (await ws.session())["reason"] == "unknown"
        assert (await _records(gw, "auth.failure"))[-1]["extra"]["code"] == "session_expired"


async def test_a_session_ends_when_its_access_token_expires(tmp_path: Path) -> None:
    config = {"workspace": {"session_idle_s": 86400}}  # only the token's exp can end it
    async with running_gateway(tmp_path, config=config) as gw, workspace_http(gw.url) as ws:
        state = await ws.sign_in("erin")
        expires_at = state["expires_at"]
        token_exp = (await _records(gw, "session.login"))[0]["extra"]["session_expires_at"]
        assert expires_at == token_exp and expires_at <= time.time() + 3600  # the IdP's ttl
        sessions = gw.app[WORKSPACE].sessions
        sessions.clock = lambda: expires_at + 0.5
        doc = await ws.session()
        assert doc["signed_in"] is False and doc["reason"] == "expired"


async def test_csrf_token_missing_or_wrong_is_refused(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        await _signed_in(gw, ws)
        status, body = await ws.get_json("/audit/v1/events", csrf=False)
        assert status == 403 and body["error"]["code"] == "csrf_failed"
        status, body = await ws.get_json("/audit/v1/events",
                                         headers={"X-CSRF-Token": "not-the-token"})
        assert status == 403 and body["error"]["code"] == "csrf_failed"
        for hostile in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"},
                        {"Origin": "null"}):
            status, body = await ws.logout(headers=hostile)
            assert status == 403 and body["error"]["code"] == "csrf_failed", hostile
        status, body = await ws.logout(csrf=False)
        assert status == 403
        # Every refusal left the session alone, and is on the record.
        assert (await ws.get_json("/audit/v1/events"))[0] == 200
        rejected = await _records(gw, "request.rejected")
        assert len(rejected) == 6
        assert {r["extra"]["reason"] for r in rejected} == {"csrf_failed"}


async def test_logout_ends_the_session(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        await _signed_in(gw, ws)
        cookie = ws.session_cookie()
        status, body = await ws.logout()
        assert status == 200 and body == {"signed_in": False}
        assert ws.session_cookie() in (None, "")  # cleared in the browser
        async with aiohttp.ClientSession() as other:  # and dead on the server
            async with other.get(f"{gw.url}/audit/v1/events",
                                 headers={"Cookie": f"regogate_ws={cookie}",
                                          "X-CSRF-Token": ws.csrf_token or ""}) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["code"] == "session_unknown"
        out = (await _records(gw, "session.logout"))[0]
        assert out["who"]["subject"] == "erin"


async def test_bearer_clients_of_the_audit_api_still_work_and_cannot_mix(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        await _signed_in(gw, ws)
        bearer = {"Authorization": f"Bearer {gw.token('erin')}"}
        async with aiohttp.ClientSession() as cli:
            async with cli.get(f"{gw.url}/audit/v1/events", headers=bearer) as resp:
                assert resp.status == 200
        status, body = await ws.get_json("/audit/v1/events", headers=bearer)
        assert status == 400 and body["error"]["code"] == "ambiguous_credentials"


async def test_sign_in_is_off_without_a_client_registration(tmp_path: Path) -> None:
    async with running_gateway(tmp_path, config={"workspace": {"client_id": None}}) as gw, \
            workspace_http(gw.url) as ws:
        res = await ws.get(f"{gw.url}/audit/login")
        assert res.status == 503 and "workspace.client_id" in res.text
        doc = await ws.session()
        assert doc["signed_in"] is False and doc["sign_in_enabled"] is False


async def test_a_confidential_client_signs_in_with_its_secret_from_a_file(tmp_path: Path) -> None:
    from idp.testing import running_idp

    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n  erin: {groups: [auditors], name: Erin}\n  bob: {groups: [contractors]}\n"
        "clients:\n"
        "  ws-confidential:\n    secret: s3cret-value\n    grant_types: [authorization_code]\n"
        "    redirect_uris: ['http://127.0.0.1/audit/callback']\n")
    secret = tmp_path / "client-secret"
    secret.write_text("s3cret-value\n")
    config = {"workspace": {"client_id": "ws-confidential",
                            "client_secret": f"${{file:{secret}}}"}}
    async with running_idp(tmp_path / "idp", users=users) as idp, \
            running_gateway(tmp_path, idp=idp, config=config) as gw, \
            workspace_http(gw.url) as ws:
        assert (await ws.sign_in("erin"))["user"]["subject"] == "erin"
        secret_value = gw.settings.workspace.client_secret
        assert secret_value is not None and "s3cret" not in repr(gw.settings.workspace)
