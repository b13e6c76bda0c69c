"""One trusted issuer's signing keys: discovery, JWKS cache, refresh, outage tolerance.

Lifecycle (per issuer):
- ``refresh()`` runs discovery (the document's ``issuer`` must equal ours exactly) and fetches
  the JWKS; concurrent callers share one fetch (single-flight).
- Keys live for the response's Cache-Control max-age clamped to
  [jwks_cache_min_s, jwks_cache_max_s]; a background task refreshes them when they expire,
  so a key the IdP removed stops verifying within jwks_cache_max_s.
- If the IdP is unreachable, the last keys keep serving until ``expiry + jwks_stale_max_s``;
  after that (or if no keys were ever fetched) the issuer is not ready and its tokens get 503.
- A JWKS with no usable key at all (every key malformed, of the wrong type, or an empty
  list) is a failed fetch, not a key set: the last good keys keep serving (within the same
  stale bound) and the failure is counted, so one broken IdP response cannot lock every
  user out until the next good fetch.
- A token whose ``kid`` is unknown triggers a refetch at most once per
  jwks_min_refresh_interval_s, counted against *unknown-kid* refetches only: a routine
  background refresh that just ran must not delay the first token signed with a rotated-in
  key. A flood of invented kids still costs the IdP at most one fetch per interval, and
  concurrent callers share one fetch (single-flight).
Only public signature keys usable with the issuer's allowed algorithms are kept; the key's
type (and curve) fixes which algorithms it verifies, never the token header.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from pep.auth.fetch import FetchError, FetchPolicy, check_url, fetch_json, max_age
from pep.auth.settings import IdentitySettings, IssuerSettings

log = logging.getLogger("regogate.auth.keys")

_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
MIN_RSA_BITS = 2048
MAX_KEYS = 100


class _NoUsableKeys(FetchError):
    """The JWKS arrived but not one key in it can verify our algorithms."""


@dataclass(frozen=True, slots=True)
class VerifyKey:
    kid: str | None
    key: Any  # a cryptography public key object
    algorithms: frozenset[str]
    fingerprint: str  # canonical JWK text: lets a refresh keep identical keys as-is


@dataclass(slots=True)
class KeySet:
    by_kid: dict[str, VerifyKey] = field(default_factory=dict)
    no_kid: tuple[VerifyKey, ...] = ()

    def __len__(self) -> int:
        return len(self.by_kid) + len(self.no_kid)


def _key_algorithms(key: Any, jwk: dict[str, Any]) -> frozenset[str]:
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGS if key.key_size >= MIN_RSA_BITS else frozenset()
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGS.get(str(jwk.get("crv")))
        # The JWK's crv must agree with the loaded curve (ES256 only with P-256, ...).
        expected = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
        return frozenset({alg}) if alg and key.curve.name == expected[alg] else frozenset()
    if isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return frozenset({"EdDSA"})
    return frozenset()


def build_key(jwk: Any, allowed: frozenset[str]) -> VerifyKey | None:
    """A verification key from one JWK, or None if it is not a usable public signing key."""
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("RSA", "EC", "OKP"):
        return None  # oct (symmetric) keys are never accepted
    if "d" in jwk or jwk.get("use", "sig") != "sig":
        return None
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        return None
    try:
        key = jwt.PyJWK(jwk).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        log.warning("skipping unusable JWK kid=%r: %s", kid, type(exc).__name__)
        return None
    algs = _key_algorithms(key, jwk) & allowed
    if "alg" in jwk:
        algs &= frozenset({jwk["alg"]}) if isinstance(jwk["alg"], str) else frozenset()
    if not algs:
        return None
    fingerprint = repr(sorted((k, repr(v)) for k, v in jwk.items()))
    return VerifyKey(kid, key, algs, fingerprint)


class IssuerKeys:
    def __init__(
        self,
        issuer: IssuerSettings,
        settings: IdentitySettings,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._settings = settings
        self._session = session
        self._clock = clock
        self._allowed = frozenset(issuer.algorithms)
        self._policy = FetchPolicy(
            allow_insecure_http=issuer.allow_insecure_http,
            timeout_s=settings.http_timeout_s,
            max_bytes=settings.max_response_bytes,
        )
        self.keys = KeySet()
        self.introspection_endpoint: str | None = (
            issuer.introspection.endpoint if issuer.introspection else None
        )
        self.needs_keys = issuer.discovery or issuer.jwks_uri is not None
        self._expires_at = 0.0
        self._fetched_at: float | None = None
        self._last_kid_refetch = float("-inf")
        self._last_error: str | None = None
        self._failures = 0
        self._inflight: asyncio.Task[bool] | None = None
        self._kid_inflight: asyncio.Task[bool] | None = None
        self.fetch_count = 0
        # Failed refreshes by cause, for /metrics: "unreachable" (transport, HTTP status,
        # not JSON, wrong issuer ...) and "no_usable_keys" (a JWKS we refused to install).
        self.failure_counts: dict[str, int] = {"unreachable": 0, "no_usable_keys": 0}

    # -- state ---------------------------------------------------------------------------

    def usable(self) -> bool:
        """Keys (or, for introspection-only issuers, an endpoint) are present and not too stale."""
        if not self.needs_keys:
            return self.introspection_endpoint is not None
        if self._fetched_at is None:
            return False
        return self._clock() <= self._expires_at + self._settings.jwks_stale_max_s

    def status(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "ready": self.usable(),
            "keys": len(self.keys),
            "age_s": None if self._fetched_at is None else round(now - self._fetched_at, 1),
            "stale": self._fetched_at is not None and now > self._expires_at,
            "last_error": self._last_error,
        }

    def lookup(self, kid: str | None, alg: str) -> VerifyKey | None:
        if kid is not None:
            key = self.keys.by_kid.get(kid)
            return key if key is not None and alg in key.algorithms else None
        # No kid: only unambiguous if exactly one key can verify this algorithm.
        fits = [k for k in (*self.keys.by_kid.values(), *self.keys.no_kid) if alg in k.algorithms]
        return fits[0] if len(fits) == 1 else None

    def is_current(self, key: VerifyKey) -> bool:
        if key.kid is not None:
            return self.keys.by_kid.get(key.kid) is key
        return key in self.keys.no_kid

    # -- fetching ------------------------------------------------------------------------

    async def refresh(self) -> bool:
        """Fetch discovery + JWKS now; concurrent callers share one fetch. True on success."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._fetch())
        # shield: a cancelled request must not cancel the fetch other requests wait on.
        return await asyncio.shield(self._inflight)

    async def refetch_for_unknown_kid(self, kid: str) -> bool:
        """Refetch because a token names ``kid``; rate-limited against earlier unknown-kid
        refetches only. False (without fetching) when the last one was too recent."""
        if self._kid_inflight is not None and not self._kid_inflight.done():
            return await asyncio.shield(self._kid_inflight)
        if self._inflight is not None and not self._inflight.done():
            # A refresh is already running (background or start-up): it may bring the key.
            await asyncio.shield(self._inflight)
            if kid in self.keys.by_kid:
                return True
        if self._kid_inflight is not None and not self._kid_inflight.done():
            return await asyncio.shield(self._kid_inflight)
        now = self._clock()
        if now - self._last_kid_refetch < self._settings.jwks_min_refresh_interval_s:
            return False
        self._last_kid_refetch = now
        self._kid_inflight = asyncio.ensure_future(self.refresh())
        return await asyncio.shield(self._kid_inflight)

    async def _fetch(self) -> bool:
        try:
            await self._fetch_once()
        except _NoUsableKeys as exc:
            return self._failed("no_usable_keys", str(exc))
        except FetchError as exc:
            return self._failed("unreachable", str(exc))
        except Exception as exc:  # noqa: BLE001 -- a broken IdP document must not kill start()
            return self._failed("unreachable", f"unusable response ({type(exc).__name__})")
        self._failures = 0
        self._last_error = None
        return True

    def _failed(self, cause: str, message: str) -> bool:
        self._failures += 1
        self.failure_counts[cause] += 1
        self._last_error = message
        kept = f"; keeping the last {len(self.keys)} good keys" if len(self.keys) else ""
        log.warning("issuer %s: key refresh failed: %s%s", self.issuer.issuer, message, kept)
        return False

    async def _fetch_once(self) -> None:
        jwks_uri = self.issuer.jwks_uri
        if self.issuer.discovery:
            url = self.issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
            doc, _ = await fetch_json(self._session, url, self._policy)
            # OIDC Discovery 4.3: the document must name exactly the issuer we trust.
            if doc.get("issuer") != self.issuer.issuer:
                raise FetchError("discovery document names a different issuer")
            if jwks_uri is None:
                found = doc.get("jwks_uri")
                if not isinstance(found, str):
                    raise FetchError("discovery document has no jwks_uri")
                jwks_uri = found
            endpoint = doc.get("introspection_endpoint")
            wants_endpoint = self.issuer.introspection and not self.issuer.introspection.endpoint
            if wants_endpoint and isinstance(endpoint, str):
                check_url(endpoint, self._policy)
                self.introspection_endpoint = endpoint
        if jwks_uri is None:
            self._fetched_at = self._clock()
            return
        self.fetch_count += 1
        jwks, headers = await fetch_json(self._session, jwks_uri, self._policy)
        raw_keys = jwks.get("keys")
        if not isinstance(raw_keys, list):
            raise FetchError("JWKS has no keys array")
        keys = self._build_keyset(raw_keys[:MAX_KEYS])
        if not len(keys):
            raise _NoUsableKeys(f"JWKS has no usable key ({len(raw_keys)} listed)")
        self.keys = keys
        now = self._clock()
        self._fetched_at = now
        self._expires_at = now + max_age(
            headers, self._settings.jwks_cache_min_s, self._settings.jwks_cache_max_s
        )
        log.info("issuer %s: %d usable keys", self.issuer.issuer, len(self.keys))

    def _build_keyset(self, raw_keys: list[Any]) -> KeySet:
        # Keep the same VerifyKey object for an unchanged JWK so verified-token cache
        # entries (which remember their key) survive a routine refresh.
        old = {k.fingerprint: k for k in (*self.keys.by_kid.values(), *self.keys.no_kid)}
        by_kid: dict[str, VerifyKey] = {}
        no_kid: list[VerifyKey] = []
        for jwk in raw_keys:
            key = build_key(jwk, self._allowed)
            if key is None:
                continue
            key = old.get(key.fingerprint, key)
            if key.kid is None:
                no_kid.append(key)
            elif key.kid in by_kid:
                # Two keys under one kid: a lookup could not be unambiguous; use neither.
                log.warning("issuer %s: duplicate kid %r ignored", self.issuer.issuer, key.kid)
                by_kid[key.kid] = VerifyKey(key.kid, None, frozenset(), "")
            else:
                by_kid[key.kid] = key
        by_kid = {k: v for k, v in by_kid.items() if v.algorithms}
        return KeySet(by_kid, tuple(no_kid))

    async def run(self) -> None:
        """Background loop: refresh when keys expire; back off (1 s .. 32 s) while failing."""
        if not self.needs_keys:
            return
        while True:
            if self._failures or self._fetched_at is None:
                delay = 2.0 ** min(self._failures, 6) / 2  # 0.5 s before the first fetch
            else:
                delay = max(0.5, self._expires_at - self._clock())
            await asyncio.sleep(delay)
            await self.refresh()
