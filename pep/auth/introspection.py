"""RFC 7662 token introspection for opaque (non-JWS) access tokens.

A token is treated as opaque when it is not a three-segment compact JWS (it has no dots).
Issuers with ``introspection`` settings are asked in configuration order (HTTP Basic client
authentication, RFC 7662 2.1 / RFC 6749 2.3.1) until one says ``active: true``. An active
answer must still pass our checks: ``iss`` (if given) equals the issuer exactly, ``aud``
names one of our audiences (unless ``require_audience: false``), ``sub`` present, ``exp`` (if
given) in the future, and it is not a refresh token. Results are cached by the caller,
keyed by the full-token hash, until ``exp`` and at most ``cache_max_s``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from pep.auth.claims import ClaimMapper, check_audience, check_lifetime
from pep.auth.fetch import FetchError, FetchPolicy, fetch_json
from pep.auth.keys import IssuerKeys
from pep.errors import Unauthorized, Unavailable
from pep.principal import Principal

log = logging.getLogger("regogate.auth.introspection")


class Introspector:
    def __init__(
        self,
        issuers: list[tuple[IssuerKeys, ClaimMapper]],
        session: aiohttp.ClientSession,
        timeout_s: float,
        max_bytes: int,
        max_concurrent: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._issuers = [(k, m) for k, m in issuers if k.issuer.introspection is not None]
        self._session = session
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._slots = asyncio.Semaphore(max_concurrent)
        self._clock = clock  # wall clock, as the answer's exp and iat
        self._inflight: dict[bytes, asyncio.Future[tuple[Principal, float]]] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._issuers)

    async def introspect(self, token: str, digest: bytes,
                         audiences: tuple[str, ...] | None = None) -> tuple[Principal, float]:
        """(principal, valid_until) or Unauthorized / Unavailable. Single-flight per token
        (``digest`` also names the audience set asked for). ``audiences`` replaces the
        issuer's and is then always required (the MCP resource, RFC 8707)."""
        pending = self._inflight.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[tuple[Principal, float]] = asyncio.ensure_future(
            self._ask_all(token, audiences))
        self._inflight[digest] = fut
        fut.add_done_callback(lambda _: self._inflight.pop(digest, None))
        return await asyncio.shield(fut)

    async def _ask_all(self, token: str,
                       audiences: tuple[str, ...] | None) -> tuple[Principal, float]:
        if not self._issuers:
            raise Unauthorized("token is not a signed JWT")
        # Flood guard: random opaque strings must not become unbounded calls to the IdP.
        if self._slots.locked():
            raise Unavailable("too many token introspections in progress", code="idp_unavailable")
        async with self._slots:
            unavailable = False
            for keys, mapper in self._issuers:
                try:
                    result = await self._ask(keys, mapper, token, audiences)
                except FetchError as exc:
                    log.warning("introspection at %s failed: %s", keys.issuer.issuer, exc)
                    unavailable = True
                    continue
                if result is not None:
                    return result
        if unavailable:
            raise Unavailable("identity provider unavailable", code="idp_unavailable")
        raise Unauthorized("token is not active")

    async def _ask(
        self, keys: IssuerKeys, mapper: ClaimMapper, token: str,
        audiences: tuple[str, ...] | None = None,
    ) -> tuple[Principal, float] | None:
        conf = keys.issuer.introspection
        assert conf is not None
        endpoint = keys.introspection_endpoint
        if endpoint is None:
            raise FetchError("introspection endpoint unknown (discovery not done)")
        # RFC 6749 2.3.1: client id and secret are form-urlencoded before Basic encoding.
        pair = f"{quote(conf.client_id, safe='')}:{quote(conf.client_secret.get_secret_value(), safe='')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        policy = FetchPolicy(keys.issuer.allow_insecure_http, self._timeout_s, self._max_bytes)
        doc, _ = await fetch_json(
            self._session, endpoint, policy, method="POST",
            form={"token": token, "token_type_hint": "access_token"}, authorization=authorization,
        )
        if doc.get("active") is not True:
            return None
        return self._accept(keys, mapper, doc, conf.cache_max_s, conf.require_audience,
                            audiences, self._clock())

    @staticmethod
    def _accept(
        keys: IssuerKeys, mapper: ClaimMapper, doc: dict[str, Any], cache_max_s: int,
        require_audience: bool, audiences: tuple[str, ...] | None, now: float,
    ) -> tuple[Principal, float] | None:
        issuer = keys.issuer
        if "iss" in doc and doc["iss"] != issuer.issuer:
            return None  # active at this endpoint, but issued by someone else
        if doc.get("token_type") == "refresh_token":
            raise Unauthorized("refresh tokens are not access tokens")
        if audiences is not None:
            check_audience(doc.get("aud"), audiences)
        elif require_audience or "aud" in doc:
            check_audience(doc.get("aud"), issuer.audiences)
        exp = doc.get("exp")
        if exp is not None:
            if isinstance(exp, bool) or not isinstance(exp, (int, float)):
                raise Unauthorized("introspection exp must be a number")
            if now >= exp:
                raise Unauthorized("token has expired", code="token_expired")
            iat = doc.get("iat")
            iat = float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None
            check_lifetime(float(exp), iat, now, issuer.max_token_lifetime_s, issuer.leeway_s)
        claims = {k: v for k, v in doc.items() if k != "active"}
        principal = mapper.principal(claims, exp)
        valid_until = now + cache_max_s if exp is None else min(float(exp), now + cache_max_s)
        return principal, valid_until
