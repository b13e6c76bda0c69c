"""The identity layer's entry point (pep/auth/authenticator.py, issue 18): the counters it
gives /metrics, its background tasks, refusals of tokens that are neither compact JWS nor
opaque, the ID-token size bound, and audience sets in the cache key."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from pep.auth import Authenticator
from pep.errors import GatewayError
from tests.auth.conftest import MakeAuth, bearer, identity, issuer_conf, rejected
from tests.auth.fakeidp import FakeIdp, SigningKey


async def test_metric_samples_count_keys_fetches_and_failures_per_issuer(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    auth = await make_auth()
    iss = idp.issuer
    assert auth.metric_samples() == [
        ("jwks_refresh_failures_total", {"issuer": iss, "cause": "unreachable"}, 0),
        ("jwks_refresh_failures_total", {"issuer": iss, "cause": "no_usable_keys"}, 0),
        ("jwks_keys", {"issuer": iss}, 1),
        ("jwks_fetches_total", {"issuer": iss}, 1),
    ]
    idp.down = True
    assert await auth.issuer_keys(iss).refresh() is False
    samples = {(name, labels.get("cause")): n for name, labels, n in auth.metric_samples()}
    assert samples[("jwks_refresh_failures_total", "unreachable")] == 1
    assert samples[("jwks_fetches_total", None)] == 1  # discovery failed before the JWKS


async def test_start_logs_an_unready_issuer_and_runs_one_named_refresh_task_per_issuer(
    make_auth: MakeAuth, idp: FakeIdp, caplog: pytest.LogCaptureFixture
) -> None:
    idp.down = True
    with caplog.at_level(logging.ERROR, logger="regogate.auth"):
        auth = await make_auth()
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "regogate.auth"] == [
        (logging.ERROR, f"issuer {idp.issuer} not ready at start-up; retrying in the background")]
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == f"jwks:{idp.issuer}"]
    assert len(tasks) == 1 and not tasks[0].done()
    await auth.close()
    assert tasks[0].cancelled()


@pytest.mark.parametrize("dots", [1, 3, 4])
async def test_a_dotted_token_that_is_not_three_segments_is_not_a_compact_jws(
    make_auth: MakeAuth, idp: FakeIdp, dots: int
) -> None:
    auth = await make_auth(issuer={"introspection": {"client_id": "gateway", "client_secret": "s3cret"}})
    err = await rejected(auth, ".".join(["eyJhbGciOiJSUzI1NiJ9"] * (dots + 1)))
    assert (err.status, err.code, err.message) == (
        401, "invalid_token", "token is not a compact JWS (encrypted tokens are not accepted)")
    assert idp.hits["introspect"] == 0


async def test_an_id_token_may_be_exactly_the_size_bound(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    token = idp.token(typ=None, aud="chat-ui", nonce="n-1")
    fits = await make_auth(max_token_bytes=len(token))
    claims = await fits.verify_id_token(token, issuer=idp.issuer, client_id="chat-ui", nonce="n-1")
    assert claims["sub"] == "alice"
    tight = await make_auth(max_token_bytes=len(token) - 1)
    with pytest.raises(GatewayError) as info:
        await tight.verify_id_token(token, issuer=idp.issuer, client_id="chat-ui", nonce="n-1")
    assert (info.value.status, info.value.code, info.value.message) == (
        401, "token_too_large", "ID token is too large")


async def test_a_token_verified_for_one_audience_set_is_not_a_hit_for_another(
    auth: Authenticator, idp: FakeIdp
) -> None:
    mcp = ("https://gw.example/mcp",)
    token = idp.token(aud=mcp[0])
    assert (await auth.authenticate(bearer(token), audiences=mcp)).sub == "alice"
    err = await rejected(auth, token)  # the model API's audiences: not this token's
    assert (err.status, err.code) == (401, "invalid_audience")
    both = idp.token(aud=["regogate", mcp[0]])
    assert (await auth.authenticate(bearer(both))).sub == "alice"
    assert (await auth.authenticate(bearer(both), audiences=mcp)).sub == "alice"
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(bearer(both), audiences=("https://other.example/mcp",))
    assert info.value.code == "invalid_audience"


# An integer exp no float can hold: the claim checks' math.isfinite raises OverflowError on
# it, an error no rule expects, so it exercises the catch-all that keeps hostile tokens
# from becoming a 500.
HUGE = 10 ** 400


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "regogate.auth"]


async def test_an_unexpected_error_verifying_a_token_is_a_plain_401_logged_by_type_only(
    auth: Authenticator, idp: FakeIdp, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="regogate.auth"):
        err = await rejected(auth, idp.token(exp=HUGE))
    assert (err.status, err.code, err.message) == (401, "invalid_token", "token is invalid")
    assert warnings_of(caplog) == [(logging.WARNING, "token rejected by an unexpected OverflowError")]
    assert auth.ready()[1]["token_cache"] == 0


async def test_an_unexpected_error_verifying_an_id_token_is_a_plain_401_logged_by_type_only(
    auth: Authenticator, idp: FakeIdp, caplog: pytest.LogCaptureFixture
) -> None:
    token = idp.token(typ=None, aud="chat-ui", nonce="n-1", exp=HUGE)
    with caplog.at_level(logging.WARNING, logger="regogate.auth"), \
            pytest.raises(GatewayError) as info:
        await auth.verify_id_token(token, issuer=idp.issuer, client_id="chat-ui", nonce="n-1")
    assert (info.value.status, info.value.code, info.value.message) == (
        401, "invalid_id_token", "ID token is invalid")
    assert warnings_of(caplog) == [
        (logging.WARNING, "ID token rejected by an unexpected OverflowError")]


async def test_a_cached_token_whose_key_was_rotated_out_is_verified_afresh_and_dropped(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=3600)
    token = idp.token()  # signed with rsa-1
    first = await auth.authenticate(bearer(token))
    assert await auth.authenticate(bearer(token)) is first  # a cache hit
    assert auth.ready()[1]["token_cache"] == 1
    idp.keys[:] = [rsa_keys[1]]
    assert await auth.issuer_keys(idp.issuer).refresh()  # rsa-1 is no longer published
    err = await rejected(auth, token)
    assert err.status == 401
    assert auth.ready()[1]["token_cache"] == 0  # the stale entry is gone, not just skipped
    fresh = idp.token(rsa_keys[1])
    assert (await auth.authenticate(bearer(fresh))).sub == "alice"
    assert auth.ready()[1]["token_cache"] == 1


async def test_audience_sets_that_join_to_the_same_text_are_different_cache_keys(
    auth: Authenticator, idp: FakeIdp
) -> None:
    # Joined with NUL, ("a", "b") and ("a\0b",) were one cache key: a token accepted for the
    # first set was then a hit for the second, which it is not meant for.
    pair = ("https://a.example/mcp", "https://b.example/mcp")
    token = idp.token(aud=pair[0])
    assert (await auth.authenticate(bearer(token), audiences=pair)).sub == "alice"
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(bearer(token), audiences=("\0".join(pair),))
    assert (info.value.status, info.value.code) == (401, "invalid_audience")


async def test_an_authenticator_that_never_started_closes_cleanly(
    idp: FakeIdp, session: aiohttp.ClientSession
) -> None:
    # A start-up that fails before start() still runs the shutdown path.
    auth = Authenticator(identity([issuer_conf(idp)]), session)
    await auth.close()
    assert [t for t in asyncio.all_tasks() if t.get_name() == f"jwks:{idp.issuer}"] == []
