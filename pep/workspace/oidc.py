"""The gateway as an OIDC relying party: discovery, the authorization URL, the code exchange.

authlib supplies the protocol pieces (PKCE S256, the grant URI, the token request body, the
token response); aiohttp is the transport, with the identity layer's fetch rules (https
unless loopback, bounded size and time, no redirects on the token endpoint). Verifying what
comes back is not done here: the ID token and the access token go to ``pep.auth``, with the
same issuer trust settings as every bearer token.
"""

from __future__ import annotations

import time
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc6749.wrappers import OAuth2Token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from pep.auth.fetch import FetchError, FetchPolicy, check_url, fetch_json
from pep.auth.settings import IdentitySettings, IssuerSettings
from pep.workspace.sessions import PendingLogin
from pep.workspace.settings import WorkspaceSettings

DISCOVERY_TTL_S = 300.0


class SignInError(Exception):
    """The sign-in cannot go on; ``status`` 400/401 (the browser's request) or 503 (the IdP)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorization: str
    token: str


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    id_token: str


class RelyingParty:
    def __init__(self, ws: WorkspaceSettings, issuer: IssuerSettings,
                 identity: IdentitySettings, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert ws.client_id is not None
        self.client_id = ws.client_id
        self._secret = ws.client_secret
        self._scope = ws.scope
        self.issuer = issuer.issuer
        self._session = session
        self._clock = clock
        self._policy = FetchPolicy(allow_insecure_http=issuer.allow_insecure_http,
                                   timeout_s=identity.http_timeout_s,
                                   max_bytes=identity.max_response_bytes)
        self._discovery = issuer.discovery
        self._endpoints: Endpoints | None = None
        self._fetched = float("-inf")

    async def endpoints(self) -> Endpoints:
        if self._endpoints is not None and self._clock() - self._fetched < DISCOVERY_TTL_S:
            return self._endpoints
        if not self._discovery:
            raise SignInError(503, "sign_in_unavailable",
                              "workspace sign-in needs the issuer's discovery document")
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            doc, _ = await fetch_json(self._session, url, self._policy)
            if doc.get("issuer") != self.issuer:
                raise FetchError("discovery document names a different issuer")
            found = Endpoints(self._endpoint(doc, "authorization_endpoint"),
                              self._endpoint(doc, "token_endpoint"))
            methods = doc.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise FetchError("the issuer does not support PKCE S256")
        except FetchError as exc:
            if self._endpoints is not None:  # keep the last good ones through an outage
                return self._endpoints
            raise SignInError(503, "idp_unavailable",
                              f"the identity provider cannot be used: {exc}") from exc
        self._endpoints, self._fetched = found, self._clock()
        return found

    def _endpoint(self, doc: dict[str, Any], name: str) -> str:
        value = doc.get(name)
        if not isinstance(value, str):
            raise FetchError(f"discovery document has no {name}")
        check_url(value, self._policy)
        return value

    def authorization_url(self, endpoint: str, pending: PendingLogin) -> str:
        return str(prepare_grant_uri(
            endpoint, self.client_id, "code", pending.redirect_uri, self._scope, pending.state,
            nonce=pending.nonce, code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256"))

    async def exchange(self, code: str, pending: PendingLogin) -> TokenSet:
        endpoint = (await self.endpoints()).token
        extra: dict[str, str] = {}
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "Accept": "application/json"}
        if self._secret is None:
            extra["client_id"] = self.client_id  # public client: PKCE is the proof
        else:  # RFC 6749 2.3.1: each part form-urlencoded before Basic encoding
            pair = f"{quote(self.client_id, safe='')}:{quote(self._secret.get_secret_value(), safe='')}"
            headers["Authorization"] = "Basic " + b64encode(pair.encode()).decode()
        body = prepare_token_request("authorization_code", code=code,
                                     redirect_uri=pending.redirect_uri,
                                     code_verifier=pending.code_verifier, **extra)
        status, doc = await self._post(endpoint, body, headers)
        if status != 200:
            error = doc.get("error") if isinstance(doc.get("error"), str) else "error"
            safe = "".join(c for c in str(error) if c.isalnum() or c == "_")[:64]
            if 400 <= status < 500:
                raise SignInError(401, "code_refused",
                                  f"the identity provider refused the sign-in code ({safe})")
            raise SignInError(503, "idp_unavailable",
                              f"the identity provider's token endpoint answered HTTP {status}")
        token = OAuth2Token.from_dict(doc)
        access, id_token = token.get("access_token"), token.get("id_token")
        if str(token.get("token_type", "")).lower() != "bearer" or not isinstance(access, str):
            raise SignInError(401, "invalid_token_response",
                              "the identity provider sent no bearer access token")
        if not isinstance(id_token, str):
            raise SignInError(401, "invalid_token_response",
                              "the identity provider sent no ID token (is openid in scope?)")
        return TokenSet(access, id_token)

    async def _post(self, url: str, body: str, headers: dict[str, str]) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=self._policy.timeout_s)
        limit = self._policy.max_bytes
        try:
            async with self._session.post(check_url(url, self._policy), data=body,
                                          headers=headers, allow_redirects=False,
                                          timeout=timeout) as resp:
                raw = await resp.content.read(limit + 1)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError, FetchError) as exc:
            raise SignInError(503, "idp_unavailable",
                              f"the identity provider's token endpoint cannot be reached"
                              f" ({type(exc).__name__})") from exc
        if len(raw) > limit:
            raise SignInError(503, "idp_unavailable", "the token response is too large")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict):
            if status == 200:
                raise SignInError(503, "idp_unavailable", "the token response is not JSON")
            doc = {}
        return status, doc
