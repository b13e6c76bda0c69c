"""The gateway as an OIDC relying party (pep.workspace.oidc) against an IdP that misbehaves:
discovery that is off, foreign, incomplete or down, and token endpoints that refuse, fail,
redirect, answer too much or answer something that is not a bearer token response.

The IdP here is a small real HTTP server on loopback whose answers each test sets; the dev
IdP (tests/workspace/test_sign_in.py) only ever answers correctly.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from pep.auth.settings import IdentitySettings, IssuerSettings
from pep.workspace.oidc import DISCOVERY_TTL_S, RelyingParty, SignInError
from pep.workspace.sessions import PendingLogin
from pep.workspace.settings import WorkspaceSettings

PENDING = PendingLogin(state="st-1", nonce="n-1", code_verifier="v" * 43,
                       redirect_uri="http://127.0.0.1:9/audit/callback", expires_at=0.0)
GOOD_TOKENS = {"access_token": "at-1", "id_token": "idt-1", "token_type": "Bearer",
               "expires_in": 300}


@dataclass
class Idp:
    """What the IdP answers; each test edits it. ``issuer`` is set once the server listens."""

    issuer: str = ""
    discovery_status: int = 200
    discovery: dict[str, Any] = field(default_factory=dict)
    token_status: int = 200
    token_body: bytes = orjson.dumps(GOOD_TOKENS)
    token_headers: dict[str, str] = field(default_factory=dict)
    discovery_hits: int = 0
    token_requests: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)

    def good_discovery(self, **changes: Any) -> None:
        doc: dict[str, Any] = {"issuer": self.issuer,
                               "authorization_endpoint": self.issuer + "/authorize",
                               "token_endpoint": self.issuer + "/token",
                               "code_challenge_methods_supported": ["S256"]}
        doc.update(changes)
        self.discovery = {k: v for k, v in doc.items() if v is not None}


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    state = Idp()

    async def discovery(_: web.Request) -> web.Response:
        state.discovery_hits += 1
        return web.json_response(state.discovery, status=state.discovery_status)

    async def token(request: web.Request) -> web.Response:
        form = dict(parse_qsl(await request.text()))
        state.token_requests.append((dict(request.headers), form))
        return web.Response(body=state.token_body, status=state.token_status,
                            headers=state.token_headers, content_type="application/json")

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_post("/token", token)
    app.router.add_post("/elsewhere", token)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.issuer = str(server.make_url("")).rstrip("/")
    state.good_discovery()
    try:
        yield state
    finally:
        await server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _rp(idp: Idp, http: aiohttp.ClientSession, *, clock: Clock | None = None,
        secret: str | None = None, client_id: str = "regogate-workspace",
        max_bytes: int = 4096, discovery: bool = True) -> RelyingParty:
    ws = WorkspaceSettings(client_id=client_id, client_secret=secret)
    issuer = IssuerSettings(issuer=idp.issuer, audiences=("gw",), discovery=discovery)
    identity = IdentitySettings(issuers=(issuer,), max_response_bytes=max_bytes)
    return RelyingParty(ws, issuer, identity, http, clock=clock or Clock())


async def _refused(call: Any, status: int, code: str, text: str) -> SignInError:
    with pytest.raises(SignInError) as err:
        await call
    assert (err.value.status, err.value.code) == (status, code)
    assert text in err.value.message and str(err.value) == err.value.message
    return err.value


# Discovery


async def test_endpoints_come_from_the_discovery_document(idp: Idp,
                                                          http: aiohttp.ClientSession) -> None:
    found = await _rp(idp, http).endpoints()
    assert (found.authorization, found.token) == (idp.issuer + "/authorize", idp.issuer + "/token")
    # No code_challenge_methods_supported at all is accepted (the field is optional).
    idp.good_discovery(code_challenge_methods_supported=None)
    assert (await _rp(idp, http).endpoints()).token == idp.issuer + "/token"


async def test_sign_in_without_discovery_is_unavailable(idp: Idp,
                                                        http: aiohttp.ClientSession) -> None:
    await _refused(_rp(idp, http, discovery=False).endpoints(), 503, "sign_in_unavailable",
                   "needs the issuer's discovery document")
    assert idp.discovery_hits == 0


@pytest.mark.parametrize(("changes", "text"), [
    ({"issuer": "https://other-idp.example"}, "names a different issuer"),
    ({"code_challenge_methods_supported": ["plain"]}, "does not support PKCE S256"),
    ({"token_endpoint": None}, "discovery document has no token_endpoint"),
    ({"authorization_endpoint": ["https://idp.example/authorize"]},
     "discovery document has no authorization_endpoint"),
    ({"token_endpoint": "http://idp.example/token"}, "plain http is refused"),
])
async def test_a_discovery_document_we_cannot_trust_makes_the_idp_unavailable(
    idp: Idp, http: aiohttp.ClientSession, changes: dict[str, Any], text: str,
) -> None:
    idp.good_discovery(**changes)
    err = await _refused(_rp(idp, http).endpoints(), 503, "idp_unavailable", text)
    assert err.message.startswith("the identity provider cannot be used: ")


async def test_discovery_is_cached_and_the_last_good_endpoints_outlive_an_outage(
    idp: Idp, http: aiohttp.ClientSession,
) -> None:
    clock = Clock()
    rp = _rp(idp, http, clock=clock)
    first = await rp.endpoints()
    clock.now += DISCOVERY_TTL_S - 1
    assert await rp.endpoints() == first and idp.discovery_hits == 1  # within the TTL
    clock.now += 1
    idp.discovery_status = 500
    assert await rp.endpoints() == first and idp.discovery_hits == 2  # refetched, kept
    idp.discovery_status = 200
    idp.good_discovery(issuer="https://other-idp.example")
    assert await rp.endpoints() == first  # an untrusted document is an outage too
    idp.good_discovery(token_endpoint=idp.issuer + "/elsewhere")
    assert (await rp.endpoints()).token == idp.issuer + "/elsewhere"  # moved endpoints
    hits = idp.discovery_hits
    clock.now += DISCOVERY_TTL_S - 1
    await rp.endpoints()
    assert idp.discovery_hits == hits  # the TTL counts from the last good fetch


async def test_a_down_idp_before_any_good_discovery_is_unavailable(
    idp: Idp, http: aiohttp.ClientSession,
) -> None:
    idp.discovery_status = 500
    await _refused(_rp(idp, http).endpoints(), 503, "idp_unavailable",
                   "the identity provider cannot be used")


# The code exchange


async def test_a_public_client_sends_its_id_and_the_pkce_verifier(
    idp: Idp, http: aiohttp.ClientSession,
) -> None:
    tokens = await _rp(idp, http).exchange("code-1", PENDING)
    assert (tokens.access_token, tokens.id_token) == ("at-1", "idt-1")
    headers, form = idp.token_requests[-1]
    assert form == {"grant_type": "authorization_code", "code": "code-1",
                    "redirect_uri": PENDING.redirect_uri,
                    "code_verifier": PENDING.code_verifier, "client_id": "regogate-workspace"}
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json" and "Authorization" not in headers


async def test_a_confidential_client_form_encodes_both_parts_before_basic(
    idp: Idp, http: aiohttp.ClientSession,
) -> None:
    await _rp(idp, http, client_id="ws:client", secret="s3cr:t/+ %").exchange("c", PENDING)
    headers, form = idp.token_requests[-1]
    scheme, _, value = headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 2.3.1: the ':' inside either part is encoded, so the pair splits once.
    assert base64.b64decode(value).decode() == "ws%3Aclient:s3cr%3At%2F%2B%20%25"
    assert "client_id" not in form and form["code"] == "c"


@pytest.mark.parametrize(("status", "body", "shown"), [
    (400, {"error": "invalid_grant"}, "(invalid_grant)"),
    # The IdP's error code is shown, but only its [A-Za-z0-9_] characters and 64 of them.
    (401, {"error": "bad<script>\"x\"" + "y" * 80}, "(badscriptx" + "y" * 54 + ")"),
    (400, {"error": {"nested": "object"}}, "(error)"),
    (499, b"not json", "(error)"),
])
async def test_a_refused_code_is_a_401_naming_the_idps_error_safely(
    idp: Idp, http: aiohttp.ClientSession, status: int, body: Any, shown: str,
) -> None:
    idp.token_status = status
    idp.token_body = body if isinstance(body, bytes) else orjson.dumps(body)
    err = await _refused(_rp(idp, http).exchange("c", PENDING), 401, "code_refused",
                         "the identity provider refused the sign-in code ")
    assert err.message.endswith(shown)


@pytest.mark.parametrize("status", [500, 503, 302, 399])
async def test_a_token_endpoint_failure_or_redirect_is_a_503(
    idp: Idp, http: aiohttp.ClientSession, status: int,
) -> None:
    """A redirect is not followed (the code and verifier would go wherever it points)."""
    idp.token_status = status
    idp.token_headers = {"Location": idp.issuer + "/elsewhere"}
    idp.token_body = orjson.dumps({"error": "server_error"})
    await _refused(_rp(idp, http).exchange("c", PENDING), 503, "idp_unavailable",
                   f"the identity provider's token endpoint answered HTTP {status}")
    assert len(idp.token_requests) == 1  # the redirect target was never asked


@pytest.mark.parametrize(("tokens", "text"), [
    ({"access_token": "at", "id_token": "idt", "token_type": "mac"}, "no bearer access token"),
    ({"access_token": "at", "id_token": "idt"}, "no bearer access token"),
    ({"id_token": "idt", "token_type": "Bearer"}, "no bearer access token"),
    ({"access_token": 7, "id_token": "idt", "token_type": "bearer"}, "no bearer access token"),
    ({"access_token": "at", "token_type": "BEARER"}, "sent no ID token"),
    ({"access_token": "at", "id_token": ["x"], "token_type": "bearer"}, "sent no ID token"),
])
async def test_a_token_response_without_a_bearer_token_and_an_id_token_is_refused(
    idp: Idp, http: aiohttp.ClientSession, tokens: dict[str, Any], text: str,
) -> None:
    idp.token_body = orjson.dumps(tokens)
    await _refused(_rp(idp, http).exchange("c", PENDING), 401, "invalid_token_response", text)


async def test_token_type_is_compared_without_case(idp: Idp,
                                                   http: aiohttp.ClientSession) -> None:
    idp.token_body = orjson.dumps({**GOOD_TOKENS, "token_type": "bEaReR"})
    assert (await _rp(idp, http).exchange("c", PENDING)).access_token == "at-1"


@pytest.mark.parametrize("body", [b"<html>ok</html>", b"", b"[1, 2]", b'"bearer"'])
async def test_a_200_that_is_not_a_json_object_is_a_503(
    idp: Idp, http: aiohttp.ClientSession, body: bytes,
) -> None:
    idp.token_body = body
    await _refused(_rp(idp, http).exchange("c", PENDING), 503, "idp_unavailable",
                   "the token response is not JSON")


async def test_a_token_response_over_the_size_bound_is_a_503(
    idp: Idp, http: aiohttp.ClientSession,
) -> None:
    rp = _rp(idp, http, max_bytes=1024)
    idp.token_body = orjson.dumps({**GOOD_TOKENS, "id_token": "x" * 1024})
    await _refused(rp.exchange("c", PENDING), 503, "idp_unavailable",
                   "the token response is too large")
    # Exactly at the bound is read.
    padding = 1024 - len(orjson.dumps({**GOOD_TOKENS, "id_token": ""}))
    idp.token_body = orjson.dumps({**GOOD_TOKENS, "id_token": "x" * padding})
    assert len(idp.token_body) == 1024
    assert (await rp.exchange("c", PENDING)).id_token == "x" * padding


async def test_an_unreachable_token_endpoint_is_a_503(idp: Idp,
                                                      http: aiohttp.ClientSession) -> None:
    with socket.socket() as s:  # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    idp.good_discovery(token_endpoint=f"http://127.0.0.1:{port}/token")
    err = await _refused(_rp(idp, http).exchange("c", PENDING), 503, "idp_unavailable",
                         "the identity provider's token endpoint cannot be reached (")
    assert err.message.endswith("Error)")  # the exception type only, e.g. ClientConnectorError


async def test_the_authorization_url_carries_state_nonce_and_the_s256_challenge(
    idp: Idp, http: aiohttp.ClientSession,
) -> None:
    rp = _rp(idp, http)
    url = rp.authorization_url((await rp.endpoints()).authorization, PENDING)
    base, _, query = url.partition("?")
    assert base == idp.issuer + "/authorize"
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(PENDING.code_verifier.encode()).digest()).rstrip(b"=").decode()
    assert dict(parse_qsl(query)) == {
        "response_type": "code", "client_id": "regogate-workspace",
        "redirect_uri": PENDING.redirect_uri, "scope": "openid profile email",
        "state": "st-1", "nonce": "n-1", "code_challenge": challenge,
        "code_challenge_method": "S256"}
