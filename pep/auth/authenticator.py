"""The identity layer's one entry point: request headers -> verified ``Principal``.

    authenticate(headers)
      credentials.extract_token   400 malformed / two credentials, 401 missing / too large
      sha256(token) -> TokenCache hit?  (deny list + key still published) -> Principal
      3-segment compact JWS  -> verify.JwtVerifier   (401 / 503 idp_unavailable)
      otherwise (opaque)     -> introspection.Introspector (RFC 7662)
      deny list              -> 401 token_revoked
      cache until exp (bounded LRU)

Errors are pep.errors types only; messages never contain token bytes. Anything unexpected
while looking at a token is reported as 401 invalid_token (and logged with its type), so a
hostile token can never produce a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from pep.auth.cache import CacheEntry, TokenCache
from pep.auth.claims import ClaimMapper
from pep.auth.credentials import extract_token
from pep.auth.denylist import DenyList, DenyListUnavailable
from pep.auth.introspection import Introspector
from pep.auth.keys import IssuerKeys
from pep.auth.settings import IdentitySettings
from pep.auth.verify import JwtVerifier
from pep.errors import GatewayError, Unauthorized, Unavailable
from pep.principal import Principal

log = logging.getLogger("regogate.auth")


class Authenticator:
    def __init__(self, settings: IdentitySettings, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock  # wall clock: token exp/iat and cache lifetimes
        self._issuers: dict[str, tuple[IssuerKeys, ClaimMapper]] = {
            i.issuer: (IssuerKeys(i, settings, session), ClaimMapper(i)) for i in settings.issuers
        }
        self._verifier = JwtVerifier(self._issuers, clock)
        self._introspector = Introspector(
            list(self._issuers.values()), session, settings.http_timeout_s,
            settings.max_response_bytes, settings.max_concurrent_introspections, clock,
        )
        self._cache = TokenCache(settings.token_cache_size)
        self._deny = DenyList(settings.deny_list)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Fetch every issuer's keys before traffic; never raises for an unreachable IdP."""
        await asyncio.gather(*(keys.refresh() for keys, _ in self._issuers.values()))
        for keys, _ in self._issuers.values():
            if not keys.usable():
                log.error("issuer %s not ready at start-up; retrying in the background", keys.issuer.issuer)
        self._tasks = [
            asyncio.create_task(keys.run(), name=f"jwks:{iss}") for iss, (keys, _) in self._issuers.items()
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def ready(self) -> tuple[bool, dict[str, Any]]:
        issuers = {iss: keys.status() for iss, (keys, _) in self._issuers.items()}
        deny = self._deny.status()
        ok = all(s["ready"] for s in issuers.values()) and bool(deny["ready"])
        return ok, {"issuers": issuers, "deny_list": deny, "token_cache": len(self._cache)}

    def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Counters owned by the identity layer, read by /metrics at scrape time."""
        out: list[tuple[str, dict[str, str], float]] = []
        for iss, (keys, _) in self._issuers.items():
            for cause, n in keys.failure_counts.items():
                out.append(("jwks_refresh_failures_total", {"issuer": iss, "cause": cause}, n))
            out.append(("jwks_keys", {"issuer": iss}, len(keys.keys)))
            out.append(("jwks_fetches_total", {"issuer": iss}, keys.fetch_count))
        return out

    def issuer_keys(self, issuer: str) -> IssuerKeys:
        """For tests and diagnostics (key counts, forced refresh)."""
        return self._issuers[issuer][0]

    async def authenticate(self, headers: Mapping[str, str],
                           audiences: tuple[str, ...] | None = None) -> Principal:
        """``audiences`` replaces every issuer's accepted audiences (and is then required of
        opaque tokens too): the MCP gateway accepts only tokens for its MCP resource. The
        cache key names the audience set, so a token verified for one set is never a hit
        for another."""
        token = extract_token(headers, self._settings.max_token_bytes)
        digest = hashlib.sha256(token.encode("ascii")).digest()
        if audiences is not None:
            # JSON, not a separator join: ("a\0b",) and ("a", "b") must be different keys.
            digest = hashlib.sha256(digest + b"\0aud\0" + json.dumps(audiences).encode()).digest()
        now = self._clock()
        entry = self._cache.get(digest, now)
        if entry is not None:
            if entry.issuer_keys is None or entry.issuer_keys.is_current(entry.key):
                self._check_deny(entry.principal)
                return entry.principal
            self._cache.discard(digest)  # its key was rotated out: verify afresh
        entry = await self._verify(token, digest, audiences)
        self._check_deny(entry.principal)
        self._cache.put(digest, entry)
        return entry.principal

    async def _verify(self, token: str, digest: bytes,
                      audiences: tuple[str, ...] | None = None) -> CacheEntry:
        try:
            if token.count(".") == 2:
                v = await self._verifier.verify(token, audiences)
                return CacheEntry(v.principal, v.exp, v.issuer_keys, v.key)
            if "." in token:
                raise Unauthorized("token is not a compact JWS (encrypted tokens are not accepted)")
            principal, valid_until = await self._introspector.introspect(
                token, digest, audiences)
            return CacheEntry(principal, valid_until)
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 -- hostile input must not become a 500
            log.warning("token rejected by an unexpected %s", type(exc).__name__)
            raise Unauthorized("token is invalid", code="invalid_token") from None

    async def verify_id_token(self, token: str, *, issuer: str, client_id: str,
                              nonce: str) -> dict[str, Any]:
        """A sign-in's ID token (pep/workspace): the claims, or 401 / 503 like a token."""
        if len(token) > self._settings.max_token_bytes:
            raise Unauthorized("ID token is too large", code="token_too_large")
        try:
            return await self._verifier.verify_id_token(
                token, issuer=issuer, client_id=client_id, nonce=nonce)
        except GatewayError:
            raise
        except Exception as exc:  # noqa: BLE001 -- hostile input must not become a 500
            log.warning("ID token rejected by an unexpected %s", type(exc).__name__)
            raise Unauthorized("ID token is invalid", code="invalid_id_token") from None

    def _check_deny(self, principal: Principal) -> None:
        try:
            denied = self._deny.denied(principal.sub, principal.token_id)
        except DenyListUnavailable:
            raise Unavailable("deny list unavailable", code="deny_list_unavailable") from None
        if denied:
            raise Unauthorized("token has been revoked", code="token_revoked")
