"""The dev IdP's HTTP endpoints (aiohttp). NOT FOR PRODUCTION.

    GET  /.well-known/openid-configuration   discovery (also at oauth-authorization-server)
    GET  /jwks                               public keys only (kid, alg, use)
    GET  /authorize                          code flow + PKCE S256: the development login
    POST /authorize                          page (pick a listed user; idp/authorize.py), or
                                             with login_hint=<user> a redirect at once
                                             (idp/grants.py: MCP clients, unattended tests)
    POST /token                              client_credentials | urn:regogate:dev:user |
                                             authorization_code | RFC 8693 token exchange
    POST /introspect                         RFC 7662, client authentication required

Errors follow RFC 6749 section 5.2: ``{"error": ..., "error_description": ...}``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import web

from idp.authorize import (
    BROWSER_COOKIE,
    PENDING_TTL_S,
    AuthorizationStore,
    AuthorizeError,
    GrantError,
    browser_id,
    check_login_form,
    error_page,
    login_page,
    origin_of,
    page_headers,
    validate_request,
)
from idp.authorize import _query as authorize_query
from idp.directory import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    GRANT_TYPES,
    TOKEN_EXCHANGE,
    Client,
    load_directory,
)
from idp.grants import (
    ACCESS_TOKEN_TYPE,
    CodeStore,
    OAuthError,
    authorization_code_claims,
    authorization_redirect,
    token_exchange_claims,
)
from idp.keys import DEFAULT_ALG, SUPPORTED_ALGS, KeyRing
from idp.opaque import OpaqueTokenStore
from idp.state import NonLoopbackError, is_loopback, issuer_for, write_state
from idp.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_TTL_S,
    TokenIssuer,
    UnknownUserError,
)

__all__ = ["IdpServer", "NonLoopbackError", "create_idp_app", "start_server"]

TOKENS = web.AppKey("tokens", TokenIssuer)
OPAQUE = web.AppKey("opaque", OpaqueTokenStore)
AUTHZ = web.AppKey("authorizations", AuthorizationStore)
CODES = web.AppKey("codes", CodeStore)

MAX_BODY_BYTES = 64 * 1024
JWKS_MAX_AGE_S = 60
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# Public clients (no secret) authenticate by PKCE alone, at the token endpoint only.
TOKEN_AUTH_METHODS = [*AUTH_METHODS, "none"]
CLAIMS_SUPPORTED = (
    "iss sub aud exp iat nbf jti client_id azp scope "
    "email name preferred_username groups team roles nonce"
)
BANNER = (
    "regogate dev IdP: FOR DEVELOPMENT ONLY, NOT FOR PRODUCTION. "
    "Anyone who can reach it can mint tokens for any listed user."
)


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _oauth_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OAuthError as exc:
        headers = {"Cache-Control": "no-store"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="regogate-dev-idp"'
        body = {"error": exc.error, "error_description": exc.description}
        return web.json_response(body, status=exc.status, headers=headers)


async def _form(request: web.Request) -> dict[str, str]:
    if request.content_type != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "body must be application/x-www-form-urlencoded")
    try:
        data = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise OAuthError(413, "invalid_request", "request body too large") from None
    form: dict[str, str] = {}
    for name, value in data.items():
        if not isinstance(value, str):
            raise OAuthError(400, "invalid_request", f"parameter {name!r} must be text")
        if name in form:  # RFC 6749 section 3.2: parameters MUST NOT repeat
            raise OAuthError(400, "invalid_request", f"parameter {name!r} repeated")
        form[name] = value
    return form


def _basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError(401, "invalid_client", "unsupported client authentication scheme")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(401, "invalid_client", "malformed Basic credentials") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError(401, "invalid_client", "malformed Basic credentials")
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate_client(request: web.Request, form: dict[str, str]) -> Client:
    basic = _basic_credentials(request)
    posted = "client_secret" in form
    if basic and posted:
        raise OAuthError(400, "invalid_request", "use one client authentication method, not two")
    if basic:
        client_id, secret = basic
    elif posted:
        client_id, secret = form.get("client_id", ""), form["client_secret"]
    else:
        return _public_client(request, form)
    tokens = request.app[TOKENS]
    client = tokens.directory.clients.get(client_id)
    # Same answer for unknown client and wrong secret: no client-id oracle.
    if client is None or not client.secret_matches(secret):
        raise OAuthError(401, "invalid_client", "client authentication failed")
    if "client_id" in form and form["client_id"] != client.client_id:
        raise OAuthError(
            400, "invalid_request", "client_id does not match the authenticated client"
        )
    return client


def _public_client(request: web.Request, form: dict[str, str]) -> Client:
    """A public client names itself and may only redeem a code (its PKCE verifier is the
    proof); a confidential client that sends no secret is refused like a wrong secret."""
    client = request.app[TOKENS].directory.clients.get(form.get("client_id", ""))
    if client is None or not client.public or form.get("grant_type") != AUTHORIZATION_CODE:
        raise OAuthError(401, "invalid_client", "client authentication required")
    return client


async def discovery(request: web.Request) -> web.Response:
    tokens = request.app[TOKENS]
    iss = tokens.issuer
    doc: dict[str, Any] = {
        "issuer": iss,
        "jwks_uri": f"{iss}/jwks",
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "introspection_endpoint": f"{iss}/introspect",
        "grant_types_supported": list(GRANT_TYPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        # RFC 9207: the redirect carries iss, so a client can tell which IdP answered.
        "authorization_response_iss_parameter_supported": True,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "scopes_supported": ["openid", "profile", "email"],
        "claims_supported": CLAIMS_SUPPORTED.split(),
    }
    return web.json_response(doc, headers={"Cache-Control": "public, max-age=300"})


async def jwks(request: web.Request) -> web.Response:
    body = request.app[TOKENS].keys.snapshot().jwks
    return web.json_response(
        body,
        content_type="application/jwk-set+json",
        headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"},
    )


async def token(request: web.Request) -> web.Response:
    form = await _form(request)
    client = _authenticate_client(request, form)
    grant = form.get("grant_type")
    if grant not in GRANT_TYPES:
        raise OAuthError(400, "unsupported_grant_type", f"unsupported grant_type {grant!r}")
    if grant not in client.grant_types:
        raise OAuthError(400, "unauthorized_client", f"client may not use grant_type {grant!r}")
    fmt = form.get("token_format", "jwt")
    if fmt not in ("jwt", "opaque"):
        raise OAuthError(400, "invalid_request", "token_format must be jwt or opaque")
    tokens = request.app[TOKENS]
    if grant == AUTHORIZATION_CODE and not request.app[CODES].holds(form.get("code", "")):
        # A code from the login page (idp/authorize.py): the workspace's OIDC sign-in.
        return _code_grant(request, form, client)
    opts: dict[str, Any] = {"audience": form.get("audience") or form.get("resource") or None}
    if form.get("scope"):
        opts["scope"] = form["scope"]
    extra: dict[str, Any] = {}
    if grant == CLIENT_CREDENTIALS:
        claims = tokens.service_claims(client.client_id, **opts)
    elif grant == AUTHORIZATION_CODE:
        claims = authorization_code_claims(tokens, request.app[CODES], client, form)
    elif grant == TOKEN_EXCHANGE:
        subject = _active_claims(request, form.get("subject_token", ""))
        claims = token_exchange_claims(tokens, subject, client, form)
        extra["issued_token_type"] = ACCESS_TOKEN_TYPE
    else:
        username = form.get("username")
        if not username:
            raise OAuthError(400, "invalid_request", "username is required for this grant")
        try:
            claims = tokens.user_claims(username, client=client.client_id, **opts)
        except UnknownUserError:
            raise OAuthError(400, "invalid_grant", "unknown user") from None
    access = request.app[OPAQUE].issue(claims) if fmt == "opaque" else tokens.sign(claims)
    body = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": claims["scope"],
        **extra,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _code_grant(request: web.Request, form: dict[str, str], client: Client) -> web.Response:
    tokens = request.app[TOKENS]
    missing = [p for p in ("code", "redirect_uri", "code_verifier") if not form.get(p)]
    if missing:
        raise OAuthError(400, "invalid_request", f"{', '.join(missing)} required for this grant")
    try:
        grant = request.app[AUTHZ].redeem(
            form["code"], client, form["redirect_uri"], form["code_verifier"])
    except GrantError as exc:
        raise OAuthError(400, exc.error, exc.description) from None
    claims = tokens.user_claims(grant.username, client=client.client_id, scope=grant.scope)
    body = {
        "access_token": tokens.sign(claims),
        "token_type": "Bearer",
        "expires_in": claims["exp"] - claims["iat"],
        "scope": claims["scope"],
        "id_token": tokens.id_token(grant.username, client=client.client_id, nonce=grant.nonce),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


async def authorize(request: web.Request) -> web.StreamResponse:
    """``login_hint`` names the dev user: redirect at once (idp/grants.py, what MCP clients
    and unattended tests use); otherwise the development login page (idp/authorize.py)."""
    if "login_hint" in request.query:
        return await authorize_hinted(request)
    return await authorize_get(request)


async def authorize_get(request: web.Request) -> web.StreamResponse:
    tokens, store = request.app[TOKENS], request.app[AUTHZ]
    try:
        q = authorize_query(request)
        browser, new = browser_id(request)
        req = validate_request(tokens.directory, q, browser=browser, now=time.time())
    except AuthorizeError as exc:
        return error_page(exc.status, str(exc))
    rid = store.add_request(req)
    resp = web.Response(text=login_page(tokens.directory, req, rid), content_type="text/html",
                        headers=page_headers(origin_of(req.redirect_uri)))
    if new:
        resp.set_cookie(BROWSER_COOKIE, browser, path="/authorize", httponly=True,
                        samesite="Strict", max_age=PENDING_TTL_S,
                        secure=not is_loopback(request.url.host or ""))
    return resp


async def authorize_post(request: web.Request) -> web.StreamResponse:
    tokens, store = request.app[TOKENS], request.app[AUTHZ]
    try:
        form = await _form(request)
    except OAuthError as exc:
        return error_page(exc.status, exc.description)
    try:
        req = check_login_form(store.take_request(form.get("rid", "")), form, request,
                               tokens.issuer)
    except AuthorizeError as exc:
        return error_page(exc.status, str(exc))
    base = {"state": req.state, "iss": tokens.issuer}
    sep = "&" if "?" in req.redirect_uri else "?"
    if form.get("action") != "approve":
        raise web.HTTPSeeOther(req.redirect_uri + sep + urlencode(
            {"error": "access_denied", "error_description": "sign-in cancelled", **base}))
    username = form.get("username", "")
    if username not in tokens.directory.users:
        return error_page(400, "pick one of the listed users")
    code = store.issue_code(req, username)
    raise web.HTTPSeeOther(req.redirect_uri + sep + urlencode({"code": code, **base}),
                           headers={"Cache-Control": "no-store"})


def _active_claims(request: web.Request, token: str) -> dict[str, Any] | None:
    """Claims of an active access token this server issued (opaque or JWT), else None."""
    if not token:
        return None
    claims = request.app[OPAQUE].lookup(token)
    return claims if claims is not None else request.app[TOKENS].verify_access_token(token)


async def authorize_hinted(request: web.Request) -> web.Response:
    counts = {name: len(request.query.getall(name)) for name in set(request.query.keys())}
    query = {name: request.query[name] for name in counts}
    location = authorization_redirect(request.app[TOKENS], request.app[CODES], query, counts)
    return web.Response(status=302, headers={"Location": location, "Cache-Control": "no-store"})


async def introspect(request: web.Request) -> web.Response:
    form = await _form(request)
    _authenticate_client(request, form)
    presented = form.get("token")
    if not presented:
        raise OAuthError(400, "invalid_request", "token is required")
    claims = request.app[OPAQUE].lookup(presented)
    if claims is None:
        claims = request.app[TOKENS].verify_access_token(presented)
    # RFC 7662 section 2.2: an inactive token gets nothing but active=false.
    body: dict[str, Any] = {"active": False}
    if claims is not None:
        body = {**claims, "active": True, "token_type": "Bearer"}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def create_idp_app(tokens: TokenIssuer, opaque: OpaqueTokenStore) -> web.Application:
    app = web.Application(middlewares=[_oauth_errors], client_max_size=MAX_BODY_BYTES)
    app[TOKENS] = tokens
    app[OPAQUE] = opaque
    app[AUTHZ] = AuthorizationStore()
    app[CODES] = CodeStore()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/.well-known/oauth-authorization-server", discovery)
    app.router.add_get("/jwks", jwks)
    app.router.add_get("/authorize", authorize)
    app.router.add_post("/authorize", authorize_post)
    app.router.add_post("/token", token)
    app.router.add_post("/introspect", introspect)
    return app


@dataclass
class IdpServer:
    """A started dev IdP; ``close()`` stops it."""

    issuer: str
    tokens: TokenIssuer
    opaque: OpaqueTokenStore
    runner: web.AppRunner

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    async def close(self) -> None:
        await self.runner.cleanup()


def _bind(host: str, port: int) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


async def start_server(
    data_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    users: Path | None = None,
    allow_non_loopback: bool = False,
    audience: str = DEFAULT_AUDIENCE,
    ttl_s: int = DEFAULT_TTL_S,
    alg: str = DEFAULT_ALG,
    access_log: bool = False,
) -> IdpServer:
    """Bind, then serve; the issuer uses the bound port (port 0 picks a free one) and is
    recorded in ``<data-dir>/idp/state.json``."""
    if not allow_non_loopback and not is_loopback(host):
        raise NonLoopbackError(
            f"refusing to bind {host!r}: the dev IdP mints tokens for anyone who asks; "
            "pass --allow-non-loopback if you really mean it"
        )
    directory = load_directory(users)
    keys = KeyRing(data_dir, alg=alg)
    keys.snapshot()  # create or validate the key file before accepting traffic
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    issuer = issuer_for(host, bound_port)
    tokens = TokenIssuer(keys, directory, issuer, audience=audience, ttl_s=ttl_s)
    opaque = OpaqueTokenStore()
    app = create_idp_app(tokens, opaque)
    # access_log=None turns request logging off (in-process test servers stay quiet).
    runner = web.AppRunner(
        app, access_log=logging.getLogger("aiohttp.access") if access_log else None
    )
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    write_state(data_dir, issuer=issuer, pid=os.getpid(), users=users, audience=audience)
    return IdpServer(issuer=issuer, tokens=tokens, opaque=opaque, runner=runner)
