"""What an upstream MCP server sees instead of the user's token.

The MCP authorization spec forbids token passthrough: the user's token is for the gateway
(its ``aud`` is our MCP resource) and must never be sent on. Per server, configuration says:

    none            no credential headers
    static          fixed headers from configuration (``${file:...}`` / ``${ENV}`` values)
    token_exchange  RFC 8693 at the configured IdP: subject_token = the user's token,
                    resource/audience = the upstream; the issued token is cached per
                    (server, user, token) until ``refresh_before_s`` before it expires

    UpstreamCredentials.headers(server, principal, subject_token) -> {header: value}

Any failure to obtain a credential raises ``Unavailable`` (503, ``upstream_credentials``):
the call is refused, never forwarded with the user's token or without the credential.
Secrets (client secret, subject and issued tokens) never appear in logs or errors.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from pep.errors import Unavailable
from pep.mcp.auth_settings import (
    ACCESS_TOKEN_TYPE,
    JWT_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    NoAuth,
    StaticAuth,
    TokenExchangeAuth,
)
from pep.principal import Principal

log = logging.getLogger("regogate.mcp.credentials")

# RFC 6749 5.2 / RFC 8693 2.2.2 error codes: the only IdP words we repeat (in logs and in
# the refusal's details). Anything else the IdP says is summarised as "other".
_OAUTH_ERRORS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
    "unsupported_grant_type", "invalid_scope", "invalid_target",
})


class UpstreamCredentials(Protocol):
    async def headers(self, server: str, principal: Principal,
                      subject_token: str) -> dict[str, str]: ...


def _refused(server: str, cause: str) -> Unavailable:
    return Unavailable(
        f"no upstream credential for MCP server {server!r}; nothing was forwarded",
        code="upstream_credentials_unavailable", details={"cause": cause})


def no_passthrough(server: str, headers: Mapping[str, str], subject_token: str) -> dict[str, str]:
    """The last check before headers leave: none of them may carry the user's token."""
    for value in headers.values():
        if subject_token and subject_token in value:
            log.error("credential for MCP server %s would carry the user's token; refused",
                      server)
            raise _refused(server, "token_passthrough")
    return dict(headers)


class NoCredentials:
    async def headers(self, server: str, principal: Principal,
                      subject_token: str) -> dict[str, str]:
        return {}


class StaticCredentials:
    """The same configured headers for every user of this server."""

    def __init__(self, settings: StaticAuth) -> None:
        self._headers = {k: v.get_secret_value() for k, v in settings.headers.items()}

    async def headers(self, server: str, principal: Principal,
                      subject_token: str) -> dict[str, str]:
        return no_passthrough(server, self._headers, subject_token)


@dataclass(frozen=True, slots=True)
class _Issued:
    token: str
    reuse_until: float  # wall clock


class TokenExchangeCredentials:
    """RFC 8693 token exchange for one upstream server, with a bounded cache keyed on a
    SHA-256 of (server, subject, whole subject token) and single-flight per key."""

    def __init__(self, settings: TokenExchangeAuth, session: Callable[[], aiohttp.ClientSession],
                 clock: Callable[[], float] = time.time) -> None:
        self._s = settings
        self._session = session  # resolved per call: the app's session starts after us
        self._clock = clock
        self._cache: OrderedDict[bytes, _Issued] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[_Issued]] = {}
        self.exchanges = 0  # IdP round trips made (tests and metrics)

    def __len__(self) -> int:
        return len(self._cache)

    async def headers(self, server: str, principal: Principal,
                      subject_token: str) -> dict[str, str]:
        key = hashlib.sha256("\0".join((server, principal.issuer, principal.sub,
                                        subject_token)).encode()).digest()
        issued = self._cached(key)
        if issued is None:
            pending = self._inflight.get(key)
            if pending is None:
                pending = asyncio.ensure_future(self._exchange(server, subject_token))
                self._inflight[key] = pending
                pending.add_done_callback(lambda _: self._inflight.pop(key, None))
            issued = await asyncio.shield(pending)
            self._put(key, issued)
        return no_passthrough(server, {self._s.header: f"Bearer {issued.token}"}, subject_token)

    def _cached(self, key: bytes) -> _Issued | None:
        issued = self._cache.get(key)
        if issued is None:
            return None
        if self._clock() >= issued.reuse_until:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return issued

    def _put(self, key: bytes, issued: _Issued) -> None:
        if self._clock() >= issued.reuse_until:
            return  # already too close to expiry to be reused
        self._cache[key] = issued
        self._cache.move_to_end(key)
        while len(self._cache) > self._s.cache_size:
            self._cache.popitem(last=False)

    def _request(self, subject_token: str) -> tuple[dict[str, str], dict[str, str]]:
        s = self._s
        form = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": subject_token,
                "subject_token_type": s.subject_token_type,
                "requested_token_type": ACCESS_TOKEN_TYPE}
        if s.resource is not None:
            form["resource"] = s.resource
        if s.audience is not None:
            form["audience"] = s.audience
        if s.scope is not None:
            form["scope"] = s.scope
        headers = {"Accept": "application/json"}
        secret = s.client_secret.get_secret_value()
        if s.client_auth == "client_secret_basic":
            # RFC 6749 2.3.1: both parts form-urlencoded before Basic encoding.
            pair = f"{quote(s.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"], form["client_secret"] = s.client_id, secret
        return form, headers

    async def _exchange(self, server: str, subject_token: str) -> _Issued:
        s = self._s
        form, headers = self._request(subject_token)
        self.exchanges += 1
        started = self._clock()
        try:
            async with self._session().post(
                s.token_endpoint, data=form, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=s.timeout_s),
            ) as resp:
                body = await resp.content.read(s.max_response_bytes + 1)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("token exchange for MCP server %s failed: %s", server,
                        type(exc).__name__)
            raise _refused(server, "idp_unreachable") from None
        if len(body) > s.max_response_bytes:
            raise _refused(server, "idp_response_too_large")
        doc = _json_object(body)
        if status != 200:
            code = doc.get("error") if doc is not None else None
            cause = code if isinstance(code, str) and code in _OAUTH_ERRORS else "other"
            log.warning("token exchange for MCP server %s refused: HTTP %s %s", server,
                        status, cause)
            raise _refused(server, f"idp_{cause}")
        return self._issued(server, doc, subject_token, started)

    def _issued(self, server: str, doc: dict[str, Any] | None, subject_token: str,
                started: float) -> _Issued:
        s = self._s
        if doc is None:
            raise _refused(server, "idp_malformed_response")
        token = doc.get("access_token")
        token_type = doc.get("token_type")
        issued_type = doc.get("issued_token_type")
        # RFC 8693 2.2.1: expires_in is RECOMMENDED; without it reuse is short.
        expires_in = doc.get("expires_in", s.default_ttl_s or 1)
        if (not isinstance(token, str) or not token or any(c in token for c in "\r\n \0")
                or not isinstance(token_type, str) or token_type.lower() != "bearer"
                or issued_type not in (ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE)
                or isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
                or expires_in <= 0):
            raise _refused(server, "idp_malformed_response")
        if token == subject_token:
            # An IdP that hands back what it was given has not exchanged anything.
            raise _refused(server, "token_passthrough")
        lifetime = min(float(expires_in), 10 * 365 * 86400.0)
        if "expires_in" not in doc:
            lifetime = min(lifetime, s.default_ttl_s)
        return _Issued(token, started + lifetime - s.refresh_before_s)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def credentials_for(auth: NoAuth | StaticAuth | TokenExchangeAuth,
                    session: Callable[[], aiohttp.ClientSession]) -> UpstreamCredentials:
    """The credential source a server's ``auth`` setting names."""
    if isinstance(auth, StaticAuth):
        return StaticCredentials(auth)
    if isinstance(auth, TokenExchangeAuth):
        return TokenExchangeCredentials(auth, session)
    return NoCredentials()
