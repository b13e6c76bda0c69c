"""Token lifetime bounds, cached identities ending with their token, and the RFC 6750
section 3.1 challenge on every refusal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from pep.auth import Authenticator
from pep.errors import InvalidAuthRequest, Unauthorized, bearer_challenge
from tests.auth.conftest import MakeAuth, bearer, identity, issuer_conf, rejected
from tests.auth.fakeidp import FakeIdp

YEAR_2283 = 9_999_999_999


async def test_token_living_past_the_issuers_maximum_is_refused(make_auth: MakeAuth,
                                                                idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"max_token_lifetime_s": 3600})
    now = int(time.time())
    cases: tuple[dict[str, Any], ...] = (
        {"exp": YEAR_2283},  # exp - iat and exp - now both huge
        {"iat": now - 7200, "exp": now + 60},  # issued for 2 h, 1 min left
        {"iat": now + 20, "exp": now + 3600 + 40},  # exp - now beyond bound+skew
    )
    for claims in cases:
        err = await rejected(auth, idp.token(**claims))
        assert (err.status, err.code) == (401, "token_lifetime_exceeded"), claims
        assert 'error="invalid_token"' in err.headers["WWW-Authenticate"]
    assert (await auth.authenticate(bearer(idp.token(exp=now + 3600)))).sub == "alice"


async def test_without_a_maximum_a_long_lived_token_is_accepted(auth: Authenticator,
                                                                 idp: FakeIdp) -> None:
    assert (await auth.authenticate(bearer(idp.token(exp=YEAR_2283)))).sub == "alice"


async def test_introspected_token_living_past_the_maximum_is_refused(
        make_auth: MakeAuth, idp: FakeIdp) -> None:
    now = int(time.time())
    idp.active_tokens["opaque-long"] = {"sub": "alice", "aud": "regogate", "iss": idp.issuer,
                                        "iat": now, "exp": YEAR_2283}
    idp.active_tokens["opaque-ok"] = {"sub": "alice", "aud": "regogate", "iss": idp.issuer,
                                      "iat": now, "exp": now + 600}
    auth = await make_auth(issuer={"max_token_lifetime_s": 3600, "introspection": {
        "client_id": "gateway", "client_secret": "s3cret"}})
    assert (await rejected(auth, "opaque-long")).code == "token_lifetime_exceeded"
    assert (await auth.authenticate(bearer("opaque-ok"))).sub == "alice"


# -- the verified-token cache ends with the token ------------------------------------------


@pytest.fixture
async def clocked(idp: FakeIdp) -> AsyncIterator[tuple[Authenticator, list[float]]]:
    now = [time.time()]
    async with aiohttp.ClientSession() as session:
        auth = Authenticator(identity([issuer_conf(idp, leeway_s=30)]), session,
                             clock=lambda: now[0])
        await auth.start()
        try:
            yield auth, now
        finally:
            await auth.close()


async def test_cached_identity_stops_at_exp_plus_leeway(
        clocked: tuple[Authenticator, list[float]], idp: FakeIdp) -> None:
    auth, now = clocked
    start = now[0]
    token = idp.token(iat=int(start), exp=int(start) + 60)
    first = await auth.authenticate(bearer(token))
    now[0] = int(start) + 60 + 29  # inside the leeway: still the cached identity
    assert await auth.authenticate(bearer(token)) is first
    now[0] = int(start) + 60 + 31  # past exp + leeway: never served from the cache again
    err = await rejected(auth, token)
    assert (err.status, err.code) == (401, "token_expired")
    now[0] = int(start) + 60 + 3599  # ... nor an hour later
    assert (await rejected(auth, token)).code == "token_expired"


# -- RFC 6750 section 3.1 ------------------------------------------------------------------


def test_no_credentials_get_a_challenge_without_an_error_code() -> None:
    for err in (Unauthorized("no token", code="missing_token"),):
        assert err.headers["WWW-Authenticate"] == 'Bearer realm="regogate"'


async def test_each_refusal_carries_its_rfc_6750_error_code(auth: Authenticator,
                                                            idp: FakeIdp) -> None:
    token = idp.token()
    missing = await rejected(auth, {})
    basic = await rejected(auth, {"Authorization": "Basic dXNlcjpwdw=="})
    for err in (missing, basic):
        assert (err.status, err.code) == (401, "missing_token")
        assert "error" not in err.headers["WWW-Authenticate"]
    for headers in ({"Authorization": f"Bearer {token}", "x-api-key": idp.token(sub="bob")},
                    {"Authorization": "Bearer a b c"}):
        err = await rejected(auth, headers)
        assert isinstance(err, InvalidAuthRequest) and err.status == 400
        assert 'error="invalid_request"' in err.headers["WWW-Authenticate"]
    for bad in (token[:-4], idp.token(exp=int(time.time()) - 3600), idp.token(aud="other")):
        err = await rejected(auth, bad)
        assert err.status == 401 and err.code != "missing_token"
        assert 'error="invalid_token"' in err.headers["WWW-Authenticate"]


def test_challenge_descriptions_cannot_break_the_header() -> None:
    value = bearer_challenge("invalid_token", 'quote " backslash \\ newline \n done')
    assert value.count('"') == 6 and "\n" not in value and "\\" not in value
