"""RFC 7662 introspection, the rules mutants of pep/auth/introspection.py showed untested
(issue 18): what is sent to the IdP, the clock the answer is judged by, the MCP audience
override, the flood guard and the timeout, and failures that must not stick.

Everything runs through the real Authenticator and a loopback IdP; the IdP below only adds
what the shared fake lacks (recording the form, holding a request until released)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from pep.auth import Authenticator
from pep.errors import GatewayError
from tests.auth.conftest import bearer, identity, issuer_conf, rejected
from tests.auth.fakeidp import FakeIdp, SigningKey, serve

NOW = 1_900_000_000.0  # the Authenticator's wall clock in these tests
CLIENT = {"client_id": "gateway", "client_secret": "s3cret"}


class RecordingIdp(FakeIdp):
    """FakeIdp that keeps each introspection form and can hold requests until released."""

    def __init__(self, keys: list[SigningKey]) -> None:
        super().__init__(keys=keys)
        self.forms: list[dict[str, str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.arrived = asyncio.Event()
        self.advertise_introspection = True
        self.answer: dict[str, Any] | None = None  # replaces every introspection answer

    async def _introspect(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.forms.append({k: str(v) for k, v in form.items()})
        self.arrived.set()
        await self.release.wait()
        if self.answer is not None:
            return web.json_response(self.answer)
        return await super()._introspect(request)

    async def _discovery(self, request: web.Request) -> web.Response:
        if self.advertise_introspection:
            return await super()._discovery(request)
        self.hits["discovery"] += 1
        return web.json_response({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"})


@pytest.fixture
async def ridp(rsa_keys: list[SigningKey]) -> AsyncIterator[RecordingIdp]:
    fake = RecordingIdp([rsa_keys[0]])
    runner, url = await serve(fake.app())
    fake.issuer = url
    try:
        yield fake
    finally:
        fake.release.set()
        await runner.cleanup()


@pytest.fixture
async def started() -> AsyncIterator[list[Authenticator]]:
    auths: list[Authenticator] = []
    yield auths
    for auth in auths:
        await auth.close()


async def authenticator(started: list[Authenticator], session: aiohttp.ClientSession,
                        issuers: list[dict[str, Any]], **extra: Any) -> Authenticator:
    auth = Authenticator(identity(issuers, **extra), session, clock=lambda: NOW)
    await auth.start()
    started.append(auth)
    return auth


def opaque(idp: FakeIdp, **claims: Any) -> str:
    token = secrets.token_urlsafe(32).replace(".", "")
    doc = {"iss": idp.issuer, "sub": "carol", "aud": "regogate", "exp": NOW + 600, **claims}
    idp.active_tokens[token] = {k: v for k, v in doc.items() if v is not ...}
    return token


def told(err: GatewayError) -> tuple[int, str, str]:
    return err.status, err.code, err.message


@pytest.fixture
async def introspecting(started: list[Authenticator], session: aiohttp.ClientSession,
                        ridp: RecordingIdp) -> Authenticator:
    return await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)],
                               http_timeout_s=0.05)


# The next two are kept small on purpose: the Authenticator is built and started in the
# fixture, and mutmut tries the tests of a function in the order of their call time, so
# they come early among the hundreds of tests that construct an Introspector.
async def test_an_opaque_token_is_introspected_with_the_settings_it_was_built_with(
    introspecting: Authenticator, ridp: RecordingIdp
) -> None:
    token = opaque(ridp)
    principal = await introspecting.authenticate(bearer(token))
    assert (principal.sub, principal.issuer, principal.expires_at) == ("carol", ridp.issuer, NOW + 600)
    assert ridp.forms == [{"token": token, "token_type_hint": "access_token"}]


async def test_the_introspection_timeout_is_the_one_it_was_built_with(
    introspecting: Authenticator, ridp: RecordingIdp
) -> None:
    ridp.release.clear()  # answers only after 5 s, long after the 0.05 s timeout
    late = asyncio.get_running_loop().call_later(5.0, ridp.release.set)
    err = await rejected(introspecting, opaque(ridp))
    late.cancel()
    assert told(err) == (503, "idp_unavailable", "identity provider unavailable")


async def test_client_credentials_are_form_encoded_before_basic_and_the_hint_is_access_token(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    # RFC 6749 2.3.1: "/", ":" and "%" in the id or secret are percent-encoded first.
    ridp.introspection_client = ("gw%2F1", "p%3As%2Fw%25rd")
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection={
        "client_id": "gw/1", "client_secret": "p:s/w%rd"})])
    token = opaque(ridp)
    assert (await auth.authenticate(bearer(token))).sub == "carol"
    assert ridp.forms == [{"token": token, "token_type_hint": "access_token"}]


async def test_an_answer_is_judged_by_the_authenticators_clock(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection={
        **CLIENT, "cache_max_s": 60})])
    err = await rejected(auth, opaque(ridp, exp=NOW))  # expires at this very instant
    assert told(err) == (401, "token_expired", "token has expired")
    principal, until = await auth._introspector.introspect(opaque(ridp, exp=NOW + 1), b"a")
    assert (principal.sub, principal.expires_at, until) == ("carol", NOW + 1, NOW + 1)
    _, until = await auth._introspector.introspect(opaque(ridp, exp=NOW + 3600), b"b")
    assert until == NOW + 60
    _, until = await auth._introspector.introspect(opaque(ridp, exp=...), b"c")
    assert until == NOW + 60


async def test_an_introspected_token_is_held_to_the_issuers_maximum_lifetime(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    auth = await authenticator(started, session, [issuer_conf(
        ridp, introspection=CLIENT, max_token_lifetime_s=600, leeway_s=0)])
    lifetime = (401, "token_lifetime_exceeded", "token lifetime exceeds this issuer's maximum")
    assert told(await rejected(auth, opaque(ridp, iat=NOW - 1000, exp=NOW + 10))) == lifetime
    assert told(await rejected(auth, opaque(ridp, exp=NOW + 601))) == lifetime
    assert (await auth.authenticate(bearer(opaque(ridp, exp=NOW + 600)))).sub == "carol"
    # An iat that is not a number is not a reading of the lifetime (true is not 1).
    assert (await auth.authenticate(bearer(opaque(ridp, iat=True, exp=NOW + 10)))).sub == "carol"


async def test_the_audiences_asked_for_replace_the_issuers_and_are_always_required(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection={
        **CLIENT, "require_audience": False})])
    mcp = ("https://gw.example/mcp",)
    err = await rejected_for(auth, opaque(ridp), mcp)  # aud is the issuer's "regogate"
    assert told(err) == (401, "invalid_audience", "token is not meant for this gateway")
    err = await rejected_for(auth, opaque(ridp, aud=...), mcp)
    assert told(err) == (401, "invalid_audience", "token has no audience")
    principal = await auth.authenticate(bearer(opaque(ridp, aud=mcp[0])), audiences=mcp)
    assert principal.sub == "carol"


async def rejected_for(auth: Authenticator, token: str, audiences: tuple[str, ...]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(bearer(token), audiences=audiences)
    return info.value


async def test_an_outage_is_not_remembered_once_the_idp_is_back(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)])
    token = opaque(ridp)
    ridp.down = True
    with caplog.at_level(logging.WARNING, logger="regogate.auth.introspection"):
        err = await rejected(auth, token)
    assert told(err) == (503, "idp_unavailable", "identity provider unavailable")
    logged = [r.getMessage() for r in caplog.records if r.name == "regogate.auth.introspection"]
    assert logged == [f"introspection at {ridp.issuer} failed: 127.0.0.1 answered HTTP 503"]
    ridp.down = False
    assert (await auth.authenticate(bearer(token))).sub == "carol"


async def test_a_failing_first_issuer_does_not_stop_the_second_from_answering(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp,
    rsa_keys: list[SigningKey],
) -> None:
    other = FakeIdp(keys=[rsa_keys[1]])
    runner, url = await serve(other.app())
    other.issuer = url
    try:
        auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT),
                                                      issuer_conf(other, introspection=CLIENT)])
        ridp.down = True
        principal = await auth.authenticate(bearer(opaque(other, sub="dave")))
        assert (principal.sub, principal.issuer) == ("dave", other.issuer)
    finally:
        await runner.cleanup()


async def test_beyond_the_concurrency_bound_an_opaque_token_is_unavailable(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)],
                               max_concurrent_introspections=1)
    ridp.release.clear()
    first = asyncio.ensure_future(auth.authenticate(bearer(opaque(ridp))))
    await ridp.arrived.wait()
    err = await rejected(auth, opaque(ridp, sub="dave"))
    assert told(err) == (503, "idp_unavailable", "too many token introspections in progress")
    ridp.release.set()
    assert (await first).sub == "carol"
    assert (await auth.authenticate(bearer(opaque(ridp, sub="dave")))).sub == "dave"


async def test_an_introspection_endpoint_slower_than_the_timeout_is_unavailable(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)],
                               http_timeout_s=0.2)
    ridp.release.clear()  # answers only after 5 s: the gateway must have given up by then
    late = asyncio.get_running_loop().call_later(5.0, ridp.release.set)
    err = await rejected(auth, opaque(ridp))
    late.cancel()
    assert told(err) == (503, "idp_unavailable", "identity provider unavailable")


async def test_an_oversized_introspection_answer_is_unavailable(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp
) -> None:
    # The discovery and JWKS answers fit in 4 KiB; this introspection answer does not.
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)],
                               max_response_bytes=4096)
    err = await rejected(auth, opaque(ridp, padding="x" * 5000))
    assert told(err) == (503, "idp_unavailable", "identity provider unavailable")
    assert (await auth.authenticate(bearer(opaque(ridp)))).sub == "carol"


async def test_without_a_discovered_endpoint_introspection_is_unavailable(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ridp.advertise_introspection = False
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)])
    with caplog.at_level(logging.WARNING, logger="regogate.auth.introspection"):
        err = await rejected(auth, opaque(ridp))
    assert told(err) == (503, "idp_unavailable", "identity provider unavailable")
    assert [r.getMessage() for r in caplog.records if r.name == "regogate.auth.introspection"] == [
        f"introspection at {ridp.issuer} failed: introspection endpoint unknown (discovery not done)"]
    assert ridp.forms == []


class LoopbackResolver(AbstractResolver):
    """Resolves every name to 127.0.0.1: a non-loopback *name* served on loopback."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        return None


async def test_plain_http_to_a_named_host_is_used_only_when_the_issuer_allows_it(
    started: list[Authenticator], ridp: RecordingIdp
) -> None:
    port = ridp.issuer.rsplit(":", 1)[1]
    named = f"http://idp.internal.test:{port}"
    conf = {"issuer": named, "audiences": ["regogate"], "discovery": False,
            "allow_insecure_http": True,
            "introspection": {**CLIENT, "endpoint": f"{named}/introspect"}}
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
    async with aiohttp.ClientSession(connector=connector) as named_session:
        auth = await authenticator(started, named_session, [conf])
        ridp.issuer = named  # the answer's iss must name the configured issuer
        assert (await auth.authenticate(bearer(opaque(ridp)))).issuer == named


@pytest.mark.parametrize("active", [..., "true", 1, None])
async def test_only_active_true_is_active(
    started: list[Authenticator], session: aiohttp.ClientSession, ridp: RecordingIdp, active: Any
) -> None:
    auth = await authenticator(started, session, [issuer_conf(ridp, introspection=CLIENT)])
    claims = {"iss": ridp.issuer, "sub": "carol", "aud": "regogate", "exp": NOW + 600}
    ridp.answer = claims if active is ... else {"active": active, **claims}
    err = await rejected(auth, "some-opaque-token")
    assert told(err) == (401, "invalid_token", "token is not active")
    ridp.answer = {"active": True, **claims}
    assert (await auth.authenticate(bearer("some-opaque-token"))).sub == "carol"
