"""Upstream credentials: static headers from configuration, and RFC 8693 token exchange at
the real dev IdP (plus a small misbehaving IdP for the answers a real one should never give).
The user's token is never among the headers."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from idp.testing import RunningIdp, running_idp
from pep.errors import Unavailable
from pep.mcp.auth_settings import StaticAuth, TokenExchangeAuth
from pep.mcp.credentials import (
    NoCredentials,
    StaticCredentials,
    TokenExchangeCredentials,
    credentials_for,
)
from pep.principal import Principal
from tests.logscan import register

UPSTREAM = "https://tickets.example/mcp"


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def principal(sub: str = "alice", issuer: str = "http://idp") -> Principal:
    return Principal(sub=sub, issuer=issuer)


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path / "idp") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def exchange(idp_url: str, http: aiohttp.ClientSession, clock: Clock | None = None,
             **kw: Any) -> TokenExchangeCredentials:
    conf: dict[str, Any] = {"type": "token_exchange", "token_endpoint": f"{idp_url}/token",
                            "client_id": "regogate-gateway",
                            "client_secret": "regogate-gateway-secret", "resource": UPSTREAM}
    conf.update(kw)
    return TokenExchangeCredentials(TokenExchangeAuth(**conf), lambda: http,
                                    **({"clock": clock} if clock else {}))


async def test_static_credentials_are_the_configured_headers_for_every_user() -> None:
    creds = StaticCredentials(StaticAuth(type="static", headers={"X-Api-Key": "k-1234567890"}))
    for user in ("alice", "bob"):
        assert await creds.headers("docs", principal(user), "user-token") == {
            "X-Api-Key": "k-1234567890"}
    assert "k-1234567890" not in repr(StaticAuth(type="static",
                                                headers={"X-Api-Key": "k-1234567890"}))


def test_static_credentials_may_not_set_transport_headers_or_multiline_values() -> None:
    for headers in ({"Host": "x"}, {"Mcp-Session-Id": "x"}, {"Content-Type": "x"},
                    {"X-Key": "a\r\nInjected: 1"}, {"Bad Name": "x"}, {}):
        with pytest.raises(ValidationError):
            StaticAuth(type="static", headers=headers)


async def test_a_static_header_that_carries_the_user_token_is_refused() -> None:
    creds = StaticCredentials(StaticAuth(type="static", headers={"X-Key": "same-as-user-token"}))
    with pytest.raises(Unavailable) as err:
        await creds.headers("docs", principal(), "same-as-user-token")
    assert err.value.details["cause"] == "token_passthrough"


async def test_none_sends_no_credentials() -> None:
    assert await NoCredentials().headers("local", principal(), "tok") == {}


async def test_token_exchange_gets_an_upstream_bound_token_for_the_user(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    creds = exchange(idp.issuer, http)
    user_token = idp.token("alice", audience="http://127.0.0.1:1/mcp")
    headers = await creds.headers("tickets", principal("alice", idp.issuer), user_token)
    assert set(headers) == {"Authorization"}
    issued = headers["Authorization"].removeprefix("Bearer ")
    assert issued != user_token and user_token not in headers["Authorization"]
    claims = claims_of(issued)
    assert claims["sub"] == "alice" and claims["aud"] == UPSTREAM
    assert claims["act"] == {"sub": "regogate-gateway"}


async def test_the_issued_token_is_cached_per_server_user_and_token_until_near_expiry(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    clock = Clock()
    creds = exchange(idp.issuer, http, clock, refresh_before_s=30)
    alice = idp.token("alice", ttl_s=120)
    first = await creds.headers("tickets", principal("alice", idp.issuer), alice)
    assert await creds.headers("tickets", principal("alice", idp.issuer), alice) == first
    assert creds.exchanges == 1
    await creds.headers("tickets", principal("bob", idp.issuer), idp.token("bob"))
    await creds.headers("tickets", principal("alice", idp.issuer), idp.token("alice"))
    await creds.headers("other", principal("alice", idp.issuer), alice)
    assert creds.exchanges == 4
    clock.now += 120 - 30 - 1  # still outside the refresh window
    assert await creds.headers("tickets", principal("alice", idp.issuer), alice) == first
    assert creds.exchanges == 4
    clock.now += 2  # inside it: exchanged afresh
    await creds.headers("tickets", principal("alice", idp.issuer), alice)
    assert creds.exchanges == 5


async def test_concurrent_first_calls_share_one_exchange(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    creds = exchange(idp.issuer, http)
    token = idp.token("alice")
    results = await asyncio.gather(*(creds.headers("tickets", principal("alice", idp.issuer),
                                                   token) for _ in range(10)))
    assert len({r["Authorization"] for r in results}) == 1
    assert creds.exchanges == 1


async def test_client_secret_post_works_too(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    creds = exchange(idp.issuer, http, client_auth="client_secret_post", resource=None,
                     audience="tickets")
    headers = await creds.headers("tickets", principal(), idp.token("alice"))
    assert claims_of(headers["Authorization"].removeprefix("Bearer "))["aud"] == "tickets"


async def test_an_idp_refusal_is_a_503_and_never_falls_back_to_the_user_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"client_id": "dev-cli", "client_secret": "dev-cli-secret"}, idp.token("alice"),
         "idp_unauthorized_client"),
        ({"client_secret": "wrong-secret"}, idp.token("alice"), "idp_invalid_client"),
        ({}, idp.token("alice", ttl_s=-60), "idp_invalid_request"),
    ]
    for conf, token, cause in cases:
        creds = exchange(idp.issuer, http, **conf)
        with pytest.raises(Unavailable) as err:
            await creds.headers("tickets", principal(), token)
        assert err.value.status == 503 and err.value.details["cause"] == cause
        assert token not in err.value.message and "secret" not in err.value.message


async def test_an_unreachable_idp_is_a_503(http: aiohttp.ClientSession) -> None:
    creds = exchange("http://127.0.0.1:9", http, timeout_s=2)
    with pytest.raises(Unavailable) as err:
        await creds.headers("tickets", principal(), "user-token-abcdefgh")
    assert err.value.details["cause"] == "idp_unreachable"


BAD_ANSWERS: list[tuple[int, Any, str]] = [
    (200, "the subject token itself", "token_passthrough"),
    (200, {"token_type": "Bearer", "issued_token_type": "urn:ietf:params:oauth:token-type:"
           "access_token"}, "idp_malformed_response"),
    (200, {"access_token": "x", "token_type": "N_A",
           "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"},
     "idp_malformed_response"),
    (200, {"access_token": "x", "token_type": "Bearer"}, "idp_malformed_response"),
    (200, {"access_token": "x", "token_type": "Bearer", "expires_in": -5,
           "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"},
     "idp_malformed_response"),
    (200, "not json at all", "idp_malformed_response"),
    (400, {"error": "made_up_code"}, "idp_other"),
    (500, "oops", "idp_other"),
]


@pytest.mark.parametrize(("status", "answer", "cause"), BAD_ANSWERS)
async def test_a_misbehaving_idp_answer_is_refused(
    http: aiohttp.ClientSession, status: int, answer: Any, cause: str
) -> None:
    subject = "subject-token-0123456789"
    register(subject)

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        assert form["subject_token"] == subject
        if answer == "the subject token itself":
            return web.json_response({"access_token": subject, "token_type": "Bearer",
                                      "issued_token_type": "urn:ietf:params:oauth:token-type:"
                                      "access_token", "expires_in": 60})
        if isinstance(answer, str):
            return web.Response(status=status, text=answer)
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_post("/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        creds = exchange(f"http://127.0.0.1:{port}", http)
        with pytest.raises(Unavailable) as err:
            await creds.headers("tickets", principal(), subject)
        assert err.value.details["cause"] == cause
        assert len(creds) == 0
    finally:
        await runner.cleanup()


def test_token_exchange_settings_need_a_target_and_a_safe_endpoint() -> None:
    base = {"type": "token_exchange", "client_id": "gw", "client_secret": "s"}
    with pytest.raises(ValidationError, match="resource"):
        TokenExchangeAuth(**base, token_endpoint="https://idp.example/token")
    with pytest.raises(ValidationError, match="plain http"):
        TokenExchangeAuth(**base, token_endpoint="http://idp.example/token", audience="a")
    with pytest.raises(ValidationError):
        TokenExchangeAuth(**base, token_endpoint="https://idp.example/token", audience="a",
                          header="Mcp-Session-Id")
    ok = TokenExchangeAuth(**base, token_endpoint="https://idp.example/token", audience="a")
    assert "s" not in repr(ok.client_secret)


async def test_credentials_for_picks_the_configured_kind(http: aiohttp.ClientSession) -> None:
    from pep.mcp.auth_settings import NoAuth

    assert isinstance(credentials_for(NoAuth(), lambda: http), NoCredentials)
    assert isinstance(credentials_for(StaticAuth(type="static", headers={"X-K": "v"}),
                                      lambda: http), StaticCredentials)
    te = TokenExchangeAuth(type="token_exchange", token_endpoint="https://idp.example/token",
                           client_id="gw", client_secret="s", audience="a")
    assert isinstance(credentials_for(te, lambda: http), TokenExchangeCredentials)
