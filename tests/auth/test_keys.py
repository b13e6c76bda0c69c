"""JWKS lifecycle: rotation, removal, unknown-kid floods, IdP outages, fetch rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from pep.auth import Authenticator
from pep.auth.fetch import FetchError, FetchPolicy, check_url, fetch_json, max_age
from pep.auth.keys import build_key
from pep.errors import Unauthorized, Unavailable
from tests.auth.conftest import MakeAuth, bearer, issuer_conf, rejected
from tests.auth.fakeidp import FakeIdp, SigningKey, serve

POLL_LIMIT_S = 10.0


async def eventually(check: Callable[[], Awaitable[bool]], limit_s: float = POLL_LIMIT_S) -> bool:
    """Poll until ``check`` is true (bounded); the bound is a hang guard, not a timing claim."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.05)
    return False


async def accepted(auth: Authenticator, token: str) -> bool:
    try:
        await auth.authenticate(bearer(token))
        return True
    except (Unauthorized, Unavailable):
        return False


# -- rotation ------------------------------------------------------------------------------


async def test_new_key_is_picked_up_on_unknown_kid_without_restart(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=0)
    idp.keys.append(rsa_keys[1])  # the IdP rotates in a new key
    principal = await auth.authenticate(bearer(idp.token(rsa_keys[1])))
    assert principal.sub == "alice"
    assert idp.hits["jwks"] == 2


async def test_new_key_is_picked_up_by_background_refresh(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    idp.cache_control = "max-age=1"
    auth = await make_auth(jwks_cache_min_s=0, jwks_cache_max_s=1, jwks_min_refresh_interval_s=3600)
    idp.keys.append(rsa_keys[1])
    keys = auth.issuer_keys(idp.issuer)
    assert await eventually(lambda: asyncio.sleep(0, "rsa-2" in keys.keys.by_kid))
    assert (await auth.authenticate(bearer(idp.token(rsa_keys[1])))).sub == "alice"


async def test_removed_key_is_refused_within_the_cache_bound(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    idp.keys.append(rsa_keys[1])
    idp.cache_control = "max-age=86400"  # the IdP asks for a day; our bound says 1 s
    auth = await make_auth(jwks_cache_min_s=0, jwks_cache_max_s=1, jwks_min_refresh_interval_s=3600)
    old_token = idp.token(rsa_keys[0])
    assert await accepted(auth, old_token)  # now also in the verified-token cache
    idp.keys.remove(rsa_keys[0])
    assert await eventually(lambda: _refused(auth, old_token))
    assert await accepted(auth, idp.token(rsa_keys[1]))


async def _refused(auth: Authenticator, token: str) -> bool:
    return not await accepted(auth, token)


async def test_unknown_kid_flood_causes_at_most_the_configured_refetch_rate(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=3600)
    assert idp.hits["jwks"] == 1
    tokens = [idp.token(SigningKey(uuid.uuid4().hex, "RS256", rsa_keys[2].private)) for _ in range(60)]
    results = await asyncio.gather(*(rejected(auth, t) for t in tokens))
    assert all(e.status == 401 for e in results)
    for token in tokens[:20]:
        assert (await rejected(auth, token)).status == 401
    # Start-up fetch + exactly one unknown-kid refetch: the interval forbids any more.
    assert idp.hits["jwks"] == 2
    assert await accepted(auth, idp.token())


async def test_rotated_key_verifies_on_first_sight_right_after_a_routine_refresh(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=3600)
    keys = auth.issuer_keys(idp.issuer)
    assert await keys.refresh()  # the background refresh has just run
    idp.keys.append(rsa_keys[1])  # ... and then the IdP rotates
    assert (await auth.authenticate(bearer(idp.token(rsa_keys[1])))).sub == "alice"
    assert idp.hits["jwks"] == 3
    # A routine refresh does not reset the unknown-kid budget either way: invented kids
    # after that one refetch cause no further fetch within the interval.
    assert await keys.refresh()
    bogus = idp.token(SigningKey("invented", "RS256", rsa_keys[2].private))
    assert (await rejected(auth, bogus)).status == 401
    assert idp.hits["jwks"] == 4


async def test_unknown_kid_joins_a_running_refresh_instead_of_fetching_again(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=3600)
    idp.keys.append(rsa_keys[1])
    idp.jwks_delay_s = 0.2
    keys = auth.issuer_keys(idp.issuer)
    background = asyncio.ensure_future(keys.refresh())
    await asyncio.sleep(0)  # the refresh is now in flight
    assert (await auth.authenticate(bearer(idp.token(rsa_keys[1])))).sub == "alice"
    assert await background
    assert idp.hits["jwks"] == 2  # start-up + the one refresh both callers shared


# -- a broken JWKS never replaces good keys --------------------------------------------------


@pytest.mark.parametrize("broken", [
    [{"kty": "RSA", "kid": "rsa-1", "n": "!!", "e": "AQAB", "alg": "RS256"}],
    [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}],
    [],
], ids=["unparsable", "symmetric-only", "empty"])
async def test_jwks_with_no_usable_key_keeps_the_last_good_keys(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey], broken: list[dict[str, str]]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=0)
    keys = auth.issuer_keys(idp.issuer)
    good = idp.keys[:]
    idp.keys.clear()
    idp.extra_jwks = broken
    assert await keys.refresh() is False
    assert await accepted(auth, idp.token(good[0], jti="fresh-after-bad-fetch"))
    assert len(keys.keys) == 1 and keys.failure_counts["no_usable_keys"] == 1
    status = keys.status()
    assert status["ready"] is True and "no usable key" in status["last_error"]
    # The IdP recovers with a rotated key: the next good fetch replaces the set as usual.
    idp.keys[:] = [rsa_keys[1]]
    idp.extra_jwks = []
    assert await accepted(auth, idp.token(rsa_keys[1]))
    assert "rsa-1" not in keys.keys.by_kid and keys.status()["last_error"] is None


async def test_concurrent_unknown_kids_share_one_refetch(
    make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]
) -> None:
    auth = await make_auth(jwks_min_refresh_interval_s=0)
    idp.jwks_delay_s = 0.2
    idp.keys.append(rsa_keys[1])
    tokens = [idp.token(rsa_keys[1], jti=str(i)) for i in range(30)]
    principals = await asyncio.gather(*(auth.authenticate(bearer(t)) for t in tokens))
    assert {p.sub for p in principals} == {"alice"}
    assert idp.hits["jwks"] == 2  # start-up + exactly one single-flight refetch


# -- outages -------------------------------------------------------------------------------


async def test_idp_down_at_start_does_not_raise_and_fails_closed(make_auth: MakeAuth, idp: FakeIdp) -> None:
    idp.down = True
    auth = await make_auth()
    ready, detail = auth.ready()
    assert ready is False and detail["issuers"][idp.issuer]["ready"] is False
    err = await rejected(auth, idp.token())
    assert (err.status, err.code) == (503, "idp_unavailable") and "Retry-After" in err.headers
    # The IdP comes back: the background retry picks its keys up, no restart.
    idp.down = False
    assert await eventually(lambda: accepted(auth, idp.token()))
    assert auth.ready()[0] is True


async def test_cached_keys_keep_serving_when_the_idp_goes_down_mid_run(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    idp.cache_control = "max-age=1"
    auth = await make_auth(jwks_cache_min_s=0, jwks_cache_max_s=1, jwks_stale_max_s=3600)
    idp.down = True
    keys = auth.issuer_keys(idp.issuer)
    assert await keys.refresh() is False
    await asyncio.sleep(1.1)  # past the cache lifetime, inside the stale bound
    assert await accepted(auth, idp.token())  # a fresh token, verified with the stale keys
    ready, detail = auth.ready()
    assert ready is True and detail["issuers"][idp.issuer]["stale"] is True


async def test_keys_stop_serving_after_the_stale_bound(make_auth: MakeAuth, idp: FakeIdp) -> None:
    idp.cache_control = "max-age=1"
    auth = await make_auth(jwks_cache_min_s=0, jwks_cache_max_s=1, jwks_stale_max_s=0)
    idp.down = True
    assert await eventually(lambda: asyncio.sleep(0, not auth.ready()[0]))
    err = await rejected(auth, idp.token())
    assert (err.status, err.code) == (503, "idp_unavailable")


async def test_discovery_naming_a_different_issuer_is_refused(make_auth: MakeAuth, idp: FakeIdp) -> None:
    idp.discovery_issuer = idp.issuer + "/evil"
    auth = await make_auth()
    assert auth.ready()[0] is False
    assert idp.hits["jwks"] == 0
    assert (await rejected(auth, idp.token())).status == 503


async def test_explicit_jwks_uri_works_without_discovery(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"discovery": False, "jwks_uri": f"{idp.issuer}/jwks"})
    assert await accepted(auth, idp.token())
    assert idp.hits["discovery"] == 0


async def test_readiness_reports_each_issuer(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth()
    ready, detail = auth.ready()
    assert ready is True
    assert detail["issuers"][idp.issuer]["keys"] == 1


# -- fetch rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "insecure", "ok"),
    [
        ("https://idp.example.com/jwks", False, True),
        ("http://idp.example.com/jwks", False, False),
        ("http://idp.example.com/jwks", True, True),
        ("http://127.0.0.1:8080/jwks", False, True),
        ("http://[::1]:8080/jwks", False, True),
        ("http://localhost/jwks", False, True),
        ("http://127.0.0.1.evil.com/jwks", False, False),
        ("file:///etc/passwd", True, False),
        ("https://user:pw@idp.example.com/jwks", False, False),
        ("/relative/jwks", False, False),
    ],
)
def test_plain_http_is_refused_except_for_loopback(url: str, insecure: bool, ok: bool) -> None:
    policy = FetchPolicy(allow_insecure_http=insecure, timeout_s=1, max_bytes=1000)
    if ok:
        check_url(url, policy)
    else:
        with pytest.raises(FetchError):
            check_url(url, policy)


async def test_redirect_to_another_host_is_refused(session: aiohttp.ClientSession) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.host)
        if request.path == "/same":
            raise web.HTTPFound("/final")
        if request.path == "/final":
            return web.json_response({"keys": []})
        port = request.url.port
        raise web.HTTPFound(f"http://localhost:{port}/final")  # same port, other host

    app = web.Application()
    app.router.add_get("/{p}", handler)
    runner, url = await serve(app)
    policy = FetchPolicy(allow_insecure_http=False, timeout_s=2, max_bytes=10_000)
    try:
        doc, _ = await fetch_json(session, f"{url}/same", policy)
        assert doc == {"keys": []}
        with pytest.raises(FetchError, match="another origin"):
            await fetch_json(session, f"{url}/elsewhere", policy)
        assert not any(h.startswith("localhost") for h in hits)
    finally:
        await runner.cleanup()


async def test_oversized_jwks_response_is_refused(session: aiohttp.ClientSession) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"keys": ["x" * 5000]})

    app = web.Application()
    app.router.add_get("/jwks", handler)
    runner, url = await serve(app)
    try:
        with pytest.raises(FetchError, match="larger"):
            await fetch_json(session, f"{url}/jwks", FetchPolicy(False, 2, 1000))
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("max-age=600", 600),
        ("public, max-age=999999", 3600),
        ("max-age=5", 60),
        ("no-store", 60),
        ("no-cache, max-age=600", 60),
        ("max-age=garbage", 60),
        (None, 60),
    ],
)
def test_cache_control_is_honoured_within_bounds(header: str | None, expected: float) -> None:
    headers = CIMultiDictProxy(CIMultiDict({"Cache-Control": header} if header else {}))
    assert max_age(headers, 60, 3600) == expected


def test_symmetric_private_and_encryption_keys_are_never_loaded(
    rsa_keys: list[SigningKey], ec_signing_key: SigningKey
) -> None:
    allowed = frozenset({"RS256", "ES256", "ES384"})
    good = rsa_keys[0].jwk()
    assert build_key(good, allowed) is not None
    assert build_key({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, allowed) is None
    assert build_key({**good, "use": "enc"}, allowed) is None
    assert build_key({**good, "d": "AQAB"}, allowed) is None
    assert build_key({**good, "alg": "HS256"}, allowed) is None
    assert build_key({**good, "key_ops": ["encrypt"]}, allowed) is None
    ec = ec_signing_key.jwk()
    loaded = build_key(ec, allowed)
    assert loaded is not None and loaded.algorithms == {"ES256"}  # P-256 never verifies ES384
    assert build_key({**ec, "alg": "ES384"}, allowed) is None


async def test_duplicate_kid_in_jwks_is_unusable(make_auth: MakeAuth, idp: FakeIdp, rsa_keys: list[SigningKey]) -> None:
    idp.extra_jwks = [{**rsa_keys[2].jwk(), "kid": "rsa-1"}]
    idp.keys.append(rsa_keys[1])  # one unambiguous key, so the set itself is usable
    auth = await make_auth()
    err = await rejected(auth, idp.token())
    assert err.status == 401
    assert await accepted(auth, idp.token(rsa_keys[1]))
    assert issuer_conf(idp)["issuer"] == idp.issuer


async def test_garbage_jwks_uri_in_discovery_marks_the_issuer_not_ready(
    make_auth: MakeAuth, idp: FakeIdp
) -> None:
    idp.issuer_jwks_override = "http://[::1"
    auth = await make_auth()
    assert auth.ready()[0] is False
    assert (await rejected(auth, idp.token())).status == 503
