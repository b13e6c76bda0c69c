"""RFC 7662 introspection rules, each with the code and message a client is told, and how
long an introspected identity is trusted (through the real Authenticator and a loopback IdP)."""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import pytest

from pep.auth import Authenticator
from pep.errors import GatewayError
from tests.auth.conftest import MakeAuth, bearer, issuer_conf, rejected
from tests.auth.fakeidp import FakeIdp

CONF = {"introspection": {"client_id": "gateway", "client_secret": "s3cret"}}


def opaque(idp: FakeIdp, **claims: Any) -> str:
    token = secrets.token_urlsafe(32).replace(".", "")
    now = int(time.time())
    doc = {"iss": idp.issuer, "sub": "carol", "aud": "regogate", "exp": now + 600, **claims}
    idp.active_tokens[token] = {k: v for k, v in doc.items() if v is not ...}
    return token


def told(err: GatewayError) -> tuple[int, str, str]:
    return err.status, err.code, err.message


async def introspect(auth: Authenticator, token: str) -> tuple[Any, float]:
    digest = hashlib.sha256(token.encode()).digest()
    return await auth._introspector.introspect(token, digest)


async def test_without_introspection_an_opaque_token_is_not_a_signed_jwt(
    auth: Authenticator, idp: FakeIdp
) -> None:
    err = await rejected(auth, opaque(idp))
    assert told(err) == (401, "invalid_token", "token is not a signed JWT")


async def test_an_inactive_token_is_not_active(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=CONF)
    err = await rejected(auth, "unknown-opaque-token")
    assert told(err) == (401, "invalid_token", "token is not active")


async def test_an_answer_for_another_issuer_is_not_ours(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=CONF)
    err = await rejected(auth, opaque(idp, iss="https://evil.example"))
    assert told(err) == (401, "invalid_token", "token is not active")
    assert (await auth.authenticate(bearer(opaque(idp, iss=...)))).sub == "carol"


async def test_a_refresh_token_is_refused(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=CONF)
    err = await rejected(auth, opaque(idp, token_type="refresh_token"))
    assert told(err) == (401, "invalid_token", "refresh tokens are not access tokens")
    assert (await auth.authenticate(bearer(opaque(idp, token_type="access_token")))).sub == "carol"


async def test_audience_is_required_unless_configured_off_but_always_checked_when_given(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    strict = await make_auth(issuer=CONF)
    err = await rejected(strict, opaque(idp, aud=...))
    assert told(err) == (401, "invalid_audience", "token has no audience")
    lenient = await make_auth(issuer={"introspection": {**CONF["introspection"],
                                                        "require_audience": False}})
    assert (await lenient.authenticate(bearer(opaque(idp, aud=...)))).sub == "carol"
    err = await rejected(lenient, opaque(idp, aud="someone-else"))
    assert told(err) == (401, "invalid_audience", "token is not meant for this gateway")


@pytest.mark.parametrize("exp", ["soon", True, [1]])
async def test_an_ill_typed_exp_is_refused(make_auth: MakeAuth, idp: FakeIdp, exp: Any) -> None:
    auth = await make_auth(issuer=CONF)
    err = await rejected(auth, opaque(idp, exp=exp))
    assert told(err) == (401, "invalid_token", "introspection exp must be a number")


async def test_an_expired_introspected_token_is_refused(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=CONF)
    err = await rejected(auth, opaque(idp, exp=int(time.time()) - 1))
    assert told(err) == (401, "token_expired", "token has expired")


async def test_an_introspected_identity_is_trusted_until_exp_at_most_cache_max(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth(issuer={"introspection": {**CONF["introspection"], "cache_max_s": 60}})
    soon = int(time.time()) + 20
    principal, until = await introspect(auth, opaque(idp, exp=soon))
    assert until == float(soon) and principal.expires_at == soon
    before = time.time()
    principal, until = await introspect(auth, opaque(idp, exp=int(before) + 3600))
    after = time.time()
    assert before + 60 <= until <= after + 60
    before = time.time()
    principal, until = await introspect(auth, opaque(idp, exp=...))
    after = time.time()
    assert before + 60 <= until <= after + 60 and principal.expires_at is None


async def test_the_active_flag_is_not_a_claim(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=CONF)
    principal = await auth.authenticate(bearer(opaque(idp, groups=["ml"])))
    assert "active" not in principal.claims and principal.groups == ("ml",)


async def test_an_unreachable_introspection_endpoint_is_a_503(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer=CONF)
    token = opaque(idp)
    idp.down = True
    err = await rejected(auth, token)
    assert told(err) == (503, "idp_unavailable", "identity provider unavailable")


async def test_a_second_issuer_answers_when_the_first_does_not_know_the_token(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: Any
) -> None:
    from tests.auth.fakeidp import serve

    other = FakeIdp(keys=[rsa_keys[1]])
    runner, url = await serve(other.app())
    other.issuer = url
    try:
        auth = await make_auth(issuers=[issuer_conf(idp, **CONF), issuer_conf(other, **CONF)])
        principal = await auth.authenticate(bearer(opaque(other, sub="dave")))
        assert (principal.sub, principal.issuer) == ("dave", other.issuer)
        assert idp.hits["introspect"] == 1 and other.hits["introspect"] == 1
        # The first issuer down, the second does not know the token: unavailable, not 401.
        idp.down = True
        err = await rejected(auth, "unknown-opaque-token")
        assert told(err) == (503, "idp_unavailable", "identity provider unavailable")
    finally:
        await runner.cleanup()


async def test_an_introspection_only_issuer_needs_no_keys(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={
        "discovery": False,
        "introspection": {**CONF["introspection"], "endpoint": f"{idp.issuer}/introspect"}})
    assert idp.hits["discovery"] == 0 and idp.hits["jwks"] == 0
    ok, detail = auth.ready()
    assert ok is True and detail["issuers"][idp.issuer]["keys"] == 0
    assert (await auth.authenticate(bearer(opaque(idp)))).sub == "carol"
    err = await rejected(auth, idp.token())  # a JWT from it has no key to verify with
    assert err.status == 401
