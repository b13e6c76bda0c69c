"""One issuer's keys on a clock the test controls (pep/auth/keys.py, issue 18): the exact
edges of staleness, readiness and the unknown-kid refetch interval, what readiness and the
failure counters say, the discovery URL and a discovered introspection endpoint, and which
published keys are used (through a real IssuerKeys against a loopback IdP)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed448

import pep.auth.keys as keys_module
from pep.auth.keys import IssuerKeys, build_key
from tests.auth.conftest import identity, issuer_conf
from tests.auth.fakeidp import FakeIdp, SigningKey, serve

ALL = frozenset({"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class DiscoveryIdp(FakeIdp):
    """FakeIdp whose discovery document can name another introspection endpoint (or carry
    other members), whose JWKS body can be any JSON, and which can publish keys from a given
    JWKS request on (``later`` keys join ``keys`` when request number ``publish_at`` starts)."""

    introspection_endpoint: str | None = None
    document_extra: dict[str, Any] | None = None
    jwks_body: Any = None
    later: list[SigningKey] | None = None
    publish_at: int = 0

    async def _discovery(self, request: web.Request) -> web.Response:
        self.hits["discovery"] += 1
        return web.json_response({
            "issuer": self.issuer, "jwks_uri": self.issuer_jwks_override or f"{self.issuer}/jwks",
            "introspection_endpoint": self.introspection_endpoint or f"{self.issuer}/introspect",
            **(self.document_extra or {}),
        })

    async def _jwks(self, request: web.Request) -> web.Response:
        if self.later and self.hits["jwks"] + 1 == self.publish_at:
            self.keys.extend(self.later)
        if self.jwks_body is not None:
            self.hits["jwks"] += 1
            return web.json_response(self.jwks_body)
        return await super()._jwks(request)


@pytest.fixture
async def didp(rsa_keys: list[SigningKey]) -> AsyncIterator[DiscoveryIdp]:
    fake = DiscoveryIdp(keys=[rsa_keys[0]])
    runner, url = await serve(fake.app())
    fake.issuer = url
    try:
        yield fake
    finally:
        await runner.cleanup()



def keys_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What pep.auth.keys logged (its own logger only)."""
    return [r.getMessage() for r in caplog.records if r.name == "regogate.auth.keys"]

def issuer_keys(idp: FakeIdp, session: aiohttp.ClientSession, clock: Clock,
                issuer: dict[str, Any] | None = None, **extra: Any) -> IssuerKeys:
    settings = identity([issuer_conf(idp, **(issuer or {}))], **extra)
    return IssuerKeys(settings.issuers[0], settings, session, clock)


async def test_keys_are_fresh_until_expiry_and_usable_until_the_stale_bound(
    didp: DiscoveryIdp, session: aiohttp.ClientSession
) -> None:
    didp.cache_control = "max-age=300"
    clock = Clock()
    keys = issuer_keys(didp, session, clock, jwks_cache_min_s=60, jwks_cache_max_s=3600,
                       jwks_stale_max_s=100)
    assert keys.status() == {"ready": False, "keys": 0, "age_s": None, "stale": False,
                             "last_error": None}
    assert await keys.refresh() is True
    assert keys.status() == {"ready": True, "keys": 1, "age_s": 0.0, "stale": False,
                             "last_error": None}
    clock.now = 1012.34
    assert keys.status()["age_s"] == 12.3
    clock.now = 1300.0  # the expiry instant: not stale yet
    assert (keys.status()["stale"], keys.usable()) == (False, True)
    clock.now = 1300.5
    assert (keys.status()["stale"], keys.usable()) == (True, True)
    clock.now = 1400.0  # expiry + stale bound: still serving
    assert keys.usable() is True
    clock.now = 1400.01
    assert keys.usable() is False and keys.status()["ready"] is False


async def test_the_unknown_kid_interval_is_measured_from_the_last_such_refetch(
    didp: DiscoveryIdp, session: aiohttp.ClientSession
) -> None:
    clock = Clock()
    keys = issuer_keys(didp, session, clock, jwks_min_refresh_interval_s=10)
    await keys.refresh()
    assert didp.hits["jwks"] == 1
    assert await keys.refetch_for_unknown_kid("new") is True  # the first one is never held back
    assert didp.hits["jwks"] == 2
    clock.now = 1009.99
    assert await keys.refetch_for_unknown_kid("new") is False
    assert didp.hits["jwks"] == 2
    clock.now = 1010.0
    assert await keys.refetch_for_unknown_kid("new") is True
    assert (didp.hits["jwks"], keys.fetch_count) == (3, 3)


async def test_a_failed_refresh_is_counted_by_cause_and_logged_with_the_kept_keys(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    keys = issuer_keys(didp, session, Clock())
    await keys.refresh()
    good = didp.keys[:]
    didp.keys.clear()
    didp.extra_jwks = [{"kty": "oct", "k": "c2VjcmV0"}]
    with caplog.at_level(logging.WARNING, logger="regogate.auth.keys"):
        assert await keys.refresh() is False
        didp.down = True
        assert await keys.refresh() is False
    assert keys.failure_counts == {"unreachable": 1, "no_usable_keys": 1}
    assert keys.status()["last_error"] == "127.0.0.1 answered HTTP 503"
    assert [r.getMessage() for r in caplog.records
            if r.name == "regogate.auth.keys" and r.levelno == logging.WARNING] == [
        f"issuer {didp.issuer}: key refresh failed: JWKS has no usable key (1 listed);"
        " keeping the last 1 good keys",
        f"issuer {didp.issuer}: key refresh failed: 127.0.0.1 answered HTTP 503;"
        " keeping the last 1 good keys",
    ]
    didp.down, didp.keys[:], didp.extra_jwks = False, good, []
    assert await keys.refresh() is True and keys.status()["last_error"] is None


async def test_an_issuer_never_loaded_logs_no_kept_keys(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    didp.down = True
    keys = issuer_keys(didp, session, Clock())
    with caplog.at_level(logging.WARNING, logger="regogate.auth.keys"):
        assert await keys.refresh() is False
    assert keys_log(caplog) == [
        f"issuer {didp.issuer}: key refresh failed: 127.0.0.1 answered HTTP 503"]


async def test_discovery_is_found_under_an_issuer_written_with_a_trailing_slash(
    didp: DiscoveryIdp, session: aiohttp.ClientSession
) -> None:
    base = didp.issuer
    didp.issuer, didp.issuer_jwks_override = base + "/", base + "/jwks"
    keys = issuer_keys(didp, session, Clock())
    assert await keys.refresh() is True and len(keys.keys) == 1


async def test_a_discovered_introspection_endpoint_must_pass_the_url_rules(
    didp: DiscoveryIdp, session: aiohttp.ClientSession
) -> None:
    didp.introspection_endpoint = "http://idp.example.com/introspect"
    conf = {"introspection": {"client_id": "gateway", "client_secret": "s3cret"}}
    keys = issuer_keys(didp, session, Clock(), conf)
    assert await keys.refresh() is False
    assert keys.introspection_endpoint is None
    assert keys.status()["last_error"] == "plain http is refused for non-loopback host idp.example.com"


async def test_a_configured_introspection_endpoint_is_not_replaced_by_discovery(
    didp: DiscoveryIdp, session: aiohttp.ClientSession
) -> None:
    didp.introspection_endpoint = "http://idp.example.com/introspect"
    mine = f"{didp.issuer}/introspect"
    conf = {"introspection": {"client_id": "gateway", "client_secret": "s3cret", "endpoint": mine}}
    keys = issuer_keys(didp, session, Clock(), conf)
    assert await keys.refresh() is True and keys.introspection_endpoint == mine
    plain = issuer_keys(didp, session, Clock())
    assert await plain.refresh() is True and plain.introspection_endpoint is None


def jwk_of(public: Any, algorithm: str, /, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(jwt.get_algorithm_by_name(algorithm).to_jwk(public))
    out.update(extra)
    return out


@pytest.mark.parametrize(("curve", "alg"), [(ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")])
def test_each_nist_curve_verifies_only_its_own_algorithm(curve: ec.EllipticCurve, alg: str) -> None:
    key = build_key(jwk_of(ec.generate_private_key(curve).public_key(), alg, kid="k"), ALL)
    assert key is not None and key.algorithms == frozenset({alg}) and key.kid == "k"


def test_an_ed448_key_is_skipped_because_pyjwt_cannot_load_it() -> None:
    # PyJWK refuses crv Ed448 ("Unsupported crv"): such a key is skipped, never half-used.
    public = ed448.Ed448PrivateKey.generate().public_key()
    assert build_key(jwk_of(public, "EdDSA"), ALL) is None


def test_a_jwk_without_use_or_ops_is_a_signing_key_and_ops_must_name_verify(
    rsa_keys: list[SigningKey],
) -> None:
    jwk = {k: v for k, v in rsa_keys[0].jwk().items() if k not in ("use", "alg")}
    key = build_key(jwk, ALL)
    assert key is not None and key.algorithms == frozenset({"RS256", "PS256"})
    assert build_key({**jwk, "key_ops": ["sign", "verify"]}, ALL) is not None
    assert build_key({**jwk, "key_ops": []}, ALL) is None
    assert build_key({**jwk, "kid": None}, ALL) is not None


def test_an_unchanged_jwk_has_the_same_fingerprint_and_a_changed_one_does_not(
    rsa_keys: list[SigningKey],
) -> None:
    jwk = rsa_keys[0].jwk()
    first, again = build_key(jwk, ALL), build_key(dict(reversed(list(jwk.items()))), ALL)
    other = build_key({**jwk, "kid": "renamed"}, ALL)
    assert first is not None and again is not None and other is not None
    assert first.fingerprint == again.fingerprint != other.fingerprint


# -- which JWKs become keys (build_key) -------------------------------------------------------


def test_an_unloadable_jwk_is_skipped_with_a_warning_naming_its_kid_and_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"kty": "RSA", "kid": "rsa-1", "n": "!!", "e": "AQAB"}
    with caplog.at_level(logging.WARNING, logger="regogate.auth.keys"):
        assert build_key(broken, ALL) is None
    assert keys_log(caplog) == [
        "skipping unusable JWK kid='rsa-1': InvalidKeyError"]


def test_an_alg_member_that_is_not_a_string_makes_the_key_unusable(
    rsa_keys: list[SigningKey],
) -> None:
    jwk = rsa_keys[0].jwk()
    assert build_key(jwk, ALL) is not None
    assert build_key({**jwk, "alg": ["RS256"]}, ALL) is None
    assert build_key({**jwk, "alg": 256}, ALL) is None
    # PyJWT takes a falsy alg for none and loads the key; an empty list is not even
    # hashable, so the alg check must refuse it, not raise out of the key-set build.
    assert jwt.PyJWK({**jwk, "alg": []}).key is not None
    assert build_key({**jwk, "alg": []}, ALL) is None
    assert build_key({**jwk, "alg": None}, ALL) is None


def test_an_ed25519_key_verifies_eddsa_only(ed_signing_key: SigningKey) -> None:
    key = build_key(ed_signing_key.jwk(), ALL)
    assert key is not None and key.algorithms == frozenset({"EdDSA"}) and key.kid == "ed-1"
    assert build_key(ed_signing_key.jwk(), ALL - {"EdDSA"}) is None


def test_a_secp256k1_key_is_skipped_for_want_of_a_pinned_algorithm() -> None:
    # PyJWT loads secp256k1 (ES256K); no algorithm of ours verifies with it, and looking its
    # curve up must not raise.
    public = ec.generate_private_key(ec.SECP256K1()).public_key()
    assert jwt.PyJWK(jwk_of(public, "ES256")).key is not None
    assert build_key(jwk_of(public, "ES256", kid="k1"), ALL | {"ES256K"}) is None


# -- the key set an IssuerKeys builds from a JWKS --------------------------------------------


async def test_a_refresh_logs_how_many_usable_keys_it_installed(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
    caplog: pytest.LogCaptureFixture,
) -> None:
    didp.keys.append(rsa_keys[1])
    keys = issuer_keys(didp, session, Clock())
    with caplog.at_level(logging.INFO, logger="regogate.auth.keys"):
        assert await keys.refresh() is True
    assert keys_log(caplog) == [
        f"issuer {didp.issuer}: 2 usable keys"]


async def test_a_duplicate_kid_is_logged_and_neither_key_is_kept(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
    caplog: pytest.LogCaptureFixture,
) -> None:
    didp.keys.append(rsa_keys[1])
    didp.extra_jwks = [{**rsa_keys[2].jwk(), "kid": "rsa-1"}]
    keys = issuer_keys(didp, session, Clock())
    with caplog.at_level(logging.WARNING, logger="regogate.auth.keys"):
        assert await keys.refresh() is True
    assert keys_log(caplog) == [
        f"issuer {didp.issuer}: duplicate kid 'rsa-1' ignored"]
    assert list(keys.keys.by_kid) == ["rsa-2"]


async def test_an_unusable_jwk_before_a_good_one_does_not_hide_it(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
) -> None:
    didp.jwks_body = {"keys": ["not a JWK", {"kty": "oct", "k": "c2VjcmV0"}, rsa_keys[1].jwk()]}
    keys = issuer_keys(didp, session, Clock())
    assert await keys.refresh() is True
    assert list(keys.keys.by_kid) == ["rsa-2"] and keys.keys.no_kid == ()


async def test_an_unchanged_jwk_keeps_its_key_object_and_a_kid_lookup_needs_the_algorithm(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
) -> None:
    keys = issuer_keys(didp, session, Clock())
    await keys.refresh()
    first = keys.keys.by_kid["rsa-1"]
    assert keys.lookup("rsa-1", "RS256") is first and keys.is_current(first)
    assert keys.lookup("rsa-1", "ES256") is None  # the kid is known, not for this algorithm
    assert keys.lookup("rsa-2", "RS256") is None
    await keys.refresh()
    assert keys.keys.by_kid["rsa-1"] is first and keys.is_current(first)
    didp.keys[:] = [rsa_keys[1]]  # rotated: the old key is no longer current
    await keys.refresh()
    assert not keys.is_current(first) and keys.is_current(keys.keys.by_kid["rsa-2"])


async def test_a_key_without_kid_is_found_by_algorithm_and_current_while_published(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
) -> None:
    def bare(key: SigningKey) -> dict[str, Any]:
        return {k: v for k, v in key.jwk().items() if k != "kid"}

    didp.keys.clear()
    didp.extra_jwks = [bare(rsa_keys[1])]
    keys = issuer_keys(didp, session, Clock())
    assert await keys.refresh() is True
    (only,) = keys.keys.no_kid
    assert only.kid is None and keys.keys.by_kid == {} and len(keys.keys) == 1
    assert keys.lookup(None, "RS256") is only and keys.is_current(only)
    assert keys.lookup(None, "ES256") is None  # no candidate at all
    didp.extra_jwks = [bare(rsa_keys[2])]
    await keys.refresh()
    assert not keys.is_current(only) and keys.is_current(keys.keys.no_kid[0])


# -- what a refresh fetches and how it fails -----------------------------------------------


async def test_an_issuer_path_ending_in_x_keeps_it_in_the_discovery_url(
    rsa_keys: list[SigningKey], session: aiohttp.ClientSession,
) -> None:
    fake = DiscoveryIdp(keys=[rsa_keys[0]])
    root = web.Application()
    root.add_subapp("/realmX", fake.app())
    runner, url = await serve(root)
    fake.issuer = f"{url}/realmX"
    try:
        keys = issuer_keys(fake, session, Clock())
        assert await keys.refresh() is True and fake.hits["discovery"] == 1
        assert list(keys.keys.by_kid) == ["rsa-1"]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("change", "message"), [
    ({"document_extra": {"issuer": "https://other.example"}},
     "discovery document names a different issuer"),
    ({"document_extra": {"jwks_uri": None}}, "discovery document has no jwks_uri"),
    ({"jwks_body": {"keys": {"kty": "RSA"}}}, "JWKS has no keys array"),
    ({"introspection_endpoint": "http://[::1"}, "unusable response (ValueError)"),
], ids=["other-issuer", "no-jwks-uri", "no-keys-array", "broken-endpoint"])
async def test_each_unusable_idp_document_is_an_unreachable_failure_with_its_reason(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, change: dict[str, Any], message: str,
) -> None:
    for name, value in change.items():
        setattr(didp, name, value)
    conf = {"introspection": {"client_id": "gateway", "client_secret": "s3cret"}}
    keys = issuer_keys(didp, session, Clock(), conf)
    assert await keys.refresh() is False
    assert keys.status()["last_error"] == message
    assert await keys.refresh() is False  # each failure is counted, by its cause
    assert keys.failure_counts == {"unreachable": 2, "no_usable_keys": 0}
    assert len(keys.keys) == 0 and keys.usable() is False


async def test_the_http_timeout_bounds_each_fetch(
    didp: DiscoveryIdp, session: aiohttp.ClientSession,
) -> None:
    didp.jwks_delay_s = 1.0
    keys = issuer_keys(didp, session, Clock(), http_timeout_s=0.2)
    assert await keys.refresh() is False
    assert keys.status()["last_error"] == "cannot reach 127.0.0.1: TimeoutError"


async def test_allow_insecure_http_also_admits_a_plain_http_discovered_endpoint(
    didp: DiscoveryIdp, session: aiohttp.ClientSession,
) -> None:
    didp.introspection_endpoint = "http://idp.example.com/introspect"
    conf = {"allow_insecure_http": True,
            "introspection": {"client_id": "gateway", "client_secret": "s3cret"}}
    keys = issuer_keys(didp, session, Clock(), conf)
    assert await keys.refresh() is True
    assert keys.introspection_endpoint == "http://idp.example.com/introspect"


async def test_an_introspection_only_issuer_fetches_nothing_and_is_ready_at_once(
    didp: DiscoveryIdp, session: aiohttp.ClientSession,
) -> None:
    clock = Clock()
    clock.now = 0.5  # a monotonic clock may be this close to its origin (just after boot)
    conf = {"discovery": False, "introspection": {
        "client_id": "gateway", "client_secret": "s3cret", "endpoint": f"{didp.issuer}/introspect"}}
    keys = issuer_keys(didp, session, clock, conf)
    assert keys.needs_keys is False and keys.usable() is True
    assert await keys.refresh() is True
    assert (didp.hits["discovery"], didp.hits["jwks"], keys.fetch_count) == (0, 0, 0)
    # No keys to go stale, but the key-cache expiry it reports against is the initial 0.
    assert keys.status() == {"ready": True, "keys": 0, "age_s": 0.0, "stale": True,
                             "last_error": None}


# -- unknown-kid refetches beside a running refresh ------------------------------------------


async def test_an_unknown_kid_refetch_works_before_any_refresh(
    didp: DiscoveryIdp, session: aiohttp.ClientSession,
) -> None:
    keys = issuer_keys(didp, session, Clock())
    assert await keys.refetch_for_unknown_kid("rsa-1") is True
    assert didp.hits["jwks"] == 1 and "rsa-1" in keys.keys.by_kid


async def test_joining_a_refresh_that_brings_the_kid_spends_no_refetch_budget(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
) -> None:
    keys = issuer_keys(didp, session, Clock(), jwks_min_refresh_interval_s=3600)
    await keys.refresh()
    didp.keys.append(rsa_keys[1])
    didp.jwks_delay_s = 0.2
    background = asyncio.ensure_future(keys.refresh())
    await asyncio.sleep(0)  # the refresh is in flight
    assert await keys.refetch_for_unknown_kid("rsa-2") is True  # it brought the kid
    assert await background is True and didp.hits["jwks"] == 2
    # The budget is untouched: the first invented kid still gets its one refetch.
    assert await keys.refetch_for_unknown_kid("invented") is True
    assert didp.hits["jwks"] == 3
    assert await keys.refetch_for_unknown_kid("invented-too") is False


async def test_callers_that_joined_a_refresh_without_their_kid_share_one_refetch(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, rsa_keys: list[SigningKey],
) -> None:
    keys = issuer_keys(didp, session, Clock(), jwks_min_refresh_interval_s=3600)
    await keys.refresh()
    didp.later, didp.publish_at = [rsa_keys[1]], 3  # rsa-2 appears in the third JWKS only
    didp.jwks_delay_s = 0.2
    background = asyncio.ensure_future(keys.refresh())
    await asyncio.sleep(0)
    first = asyncio.ensure_future(keys.refetch_for_unknown_kid("rsa-2"))
    second = asyncio.ensure_future(keys.refetch_for_unknown_kid("rsa-2"))
    assert await background is True and "rsa-2" not in keys.keys.by_kid
    assert (await first, await second) == (True, True)
    assert didp.hits["jwks"] == 3 and "rsa-2" in keys.keys.by_kid


# -- the background loop's schedule ------------------------------------------------------------


class _Stop(Exception):
    """Ends IssuerKeys.run() (an endless loop) from inside its sleep."""


class Sleeps:
    """Stands in for asyncio.sleep inside pep.auth.keys only (the rest of asyncio is the real
    one): records each delay run() asks for, then runs the next step (a change to the IdP or
    the clock) before run() refreshes; with no step left it ends the loop."""

    def __init__(self, steps: list[Callable[[], None]]) -> None:
        self.delays: list[float] = []
        self._steps = steps

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        if not self._steps:
            raise _Stop
        self._steps.pop(0)()
        await _real_sleep(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


_real_sleep = asyncio.sleep


async def test_run_waits_for_expiry_and_backs_off_exponentially_while_failing(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    keys = issuer_keys(didp, session, clock, jwks_cache_min_s=0, jwks_cache_max_s=3600)

    def outage() -> None:
        clock.now, didp.down = 1300.25, True  # just past the expiry, and the IdP is down

    def recovery() -> None:
        didp.down, didp.cache_control = False, "max-age=0"

    def nothing() -> None:
        pass

    sleeps = Sleeps([nothing, outage, *[nothing] * 6, recovery])
    monkeypatch.setattr(keys_module, "asyncio", sleeps)
    with pytest.raises(_Stop):
        await keys.run()
    assert sleeps.delays == [
        0.5,  # never fetched, no failure yet
        300.0,  # fetched: until the expiry (max-age=300)
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 32.0,  # failures 1..7 (past the expiry), capped
        0.5,  # fetched again, expiring at once: the minimum wait
    ]
    assert keys.failure_counts["unreachable"] == 7 and keys.status()["last_error"] is None


async def test_run_of_an_issuer_without_keys_returns_at_once(
    didp: DiscoveryIdp, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = {"discovery": False, "introspection": {
        "client_id": "gateway", "client_secret": "s3cret", "endpoint": f"{didp.issuer}/introspect"}}
    keys = issuer_keys(didp, session, Clock(), conf)
    sleeps = Sleeps([])
    monkeypatch.setattr(keys_module, "asyncio", sleeps)
    await keys.run()  # returns: nothing to refresh, so no sleep either
    assert sleeps.delays == []
