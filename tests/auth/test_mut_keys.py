"""One issuer's keys on a clock the test controls (pep/auth/keys.py, issue 18): the exact
edges of staleness, readiness and the unknown-kid refetch interval, what readiness and the
failure counters say, the discovery URL and a discovered introspection endpoint, and which
published keys are used (through a real IssuerKeys against a loopback IdP)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed448

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
    """FakeIdp whose discovery document can name another introspection endpoint."""

    introspection_endpoint: str | None = None

    async def _discovery(self, request: web.Request) -> web.Response:
        self.hits["discovery"] += 1
        return web.json_response({
            "issuer": self.issuer, "jwks_uri": self.issuer_jwks_override or f"{self.issuer}/jwks",
            "introspection_endpoint": self.introspection_endpoint or f"{self.issuer}/introspect",
        })


@pytest.fixture
async def didp(rsa_keys: list[SigningKey]) -> AsyncIterator[DiscoveryIdp]:
    fake = DiscoveryIdp(keys=[rsa_keys[0]])
    runner, url = await serve(fake.app())
    fake.issuer = url
    try:
        yield fake
    finally:
        await runner.cleanup()


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
    assert [r.getMessage() for r in caplog.records if r.name == "regogate.auth.keys"] == [
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
