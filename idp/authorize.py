"""The dev IdP's authorization endpoint: code flow, PKCE S256 required. NOT FOR PRODUCTION.

    GET  /authorize   validate the request (RFC 6749 4.1.1, RFC 7636 4.3, OIDC Core 3.1.2.1),
                      then show the development login page: pick one of the listed users
    POST /authorize   the login form: issue a single-use code bound to the client, the
                      redirect URI, the nonce and the PKCE challenge; 303 to the client

There is no password: anyone who can reach this page can sign in as any listed user. That is
the point of a development IdP, and why it refuses to bind anything but loopback.

Rules kept even so, because the gateway's sign-in is tested against them:
- an unknown client or an unregistered redirect URI gets an error page, never a redirect
  (RFC 6749 4.1.2.1: otherwise the endpoint is an open redirector);
- ``state``, ``nonce`` and ``code_challenge`` (S256 only) are required;
- the login form is CSRF-safe: it carries a per-request token, and the request is bound to
  the browser that opened it by an ``HttpOnly; SameSite=Strict`` cookie; ``Origin`` must be
  ours when the browser sends it; the page may not be framed;
- a code lives ``CODE_TTL_S`` seconds and is refused the second time (RFC 6749 4.1.2).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from idp.directory import AUTHORIZATION_CODE, Client, Directory

PENDING_TTL_S = 600
CODE_TTL_S = 60
MAX_PENDING = 10_000
BROWSER_COOKIE = "regogate_idp_browser"
# RFC 7636 4.1: 43-128 characters of the unreserved set.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
_SINGLE = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
           "code_challenge", "code_challenge_method", "prompt", "response_mode")


class AuthorizeError(Exception):
    """Refused before the client can be trusted with a redirect: shown as a page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class GrantError(Exception):
    """Token endpoint refusal of a code (RFC 6749 5.2 ``error``)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


@dataclass(frozen=True, slots=True)
class AuthRequest:
    client_id: str
    redirect_uri: str
    scope: str
    state: str
    nonce: str
    code_challenge: str
    csrf: str
    browser: str
    expires: float


@dataclass(slots=True)
class CodeGrant:
    client_id: str
    redirect_uri: str
    username: str
    scope: str
    nonce: str
    code_challenge: str
    expires: float
    used: bool = False


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def redirect_uri_matches(registered: str, presented: str) -> bool:
    """Exact string match; a loopback IP literal registered without a port accepts any port
    on the presented URI, everything else equal (RFC 8252 7.3)."""
    if registered == presented:
        return True
    reg, got = urlsplit(registered), urlsplit(presented)
    if reg.scheme != "http" or reg.port is not None or got.port is None:
        return False
    try:
        loopback = reg.hostname is not None and ip_address(reg.hostname).is_loopback
    except ValueError:
        return False
    return loopback and (reg.scheme, reg.hostname, reg.path, reg.query) == (
        got.scheme, got.hostname, got.path, got.query) and not got.fragment and not got.username


class AuthorizationStore:
    """Pending login pages and issued codes, in memory (the dev IdP is one process)."""

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._pending: OrderedDict[str, AuthRequest] = OrderedDict()
        self._codes: OrderedDict[str, CodeGrant] = OrderedDict()

    def _prune(self, table: OrderedDict[str, Any]) -> None:
        now = self._clock()
        while table and (len(table) >= MAX_PENDING or next(iter(table.values())).expires < now):
            table.popitem(last=False)

    def add_request(self, req: AuthRequest) -> str:
        self._prune(self._pending)
        rid = secrets.token_urlsafe(24)
        self._pending[rid] = req
        return rid

    def take_request(self, rid: str) -> AuthRequest | None:
        req = self._pending.pop(rid, None)
        if req is None or req.expires < self._clock():
            return None
        return req

    def issue_code(self, req: AuthRequest, username: str) -> str:
        self._prune(self._codes)
        code = secrets.token_urlsafe(32)
        self._codes[_digest(code)] = CodeGrant(
            req.client_id, req.redirect_uri, username, req.scope, req.nonce,
            req.code_challenge, self._clock() + CODE_TTL_S)
        return code

    def redeem(self, code: str, client: Client, redirect_uri: str, verifier: str) -> CodeGrant:
        grant = self._codes.get(_digest(code))
        if grant is None or grant.expires < self._clock():
            raise GrantError("invalid_grant", "authorization code is unknown or expired")
        if grant.used:
            raise GrantError("invalid_grant", "authorization code was already used")
        # Spent whatever happens next: a code that failed one check is not retried.
        grant.used = True
        if grant.client_id != client.client_id:
            raise GrantError("invalid_grant", "authorization code was issued to another client")
        if grant.redirect_uri != redirect_uri:
            raise GrantError("invalid_grant", "redirect_uri differs from the authorization request")
        if not _VERIFIER.fullmatch(verifier):
            raise GrantError("invalid_grant", "code_verifier is malformed (RFC 7636 4.1)")
        if not hmac.compare_digest(create_s256_code_challenge(verifier), grant.code_challenge):
            raise GrantError("invalid_grant", "code_verifier does not match the code_challenge")
        return grant


# -- HTTP ------------------------------------------------------------------------------------

def _query(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in request.query:
        values = request.query.getall(name)
        if len(values) > 1 and name in _SINGLE:
            raise AuthorizeError(400, f"parameter {name!r} is repeated (RFC 6749 3.1)")
        out[name] = values[0]
    return out


def _redirect(uri: str, params: dict[str, str]) -> web.HTTPSeeOther:
    sep = "&" if urlsplit(uri).query else "?"
    return web.HTTPSeeOther(uri + sep + urlencode(params), headers={"Cache-Control": "no-store"})


def _client_and_redirect(directory: Directory, q: dict[str, str]) -> tuple[Client, str]:
    client = directory.clients.get(q.get("client_id", ""))
    if client is None or AUTHORIZATION_CODE not in client.grant_types:
        raise AuthorizeError(400, "unknown client, or one not registered for the code grant")
    uri = q.get("redirect_uri", "")
    if not any(redirect_uri_matches(r, uri) for r in client.redirect_uris):
        raise AuthorizeError(400, "redirect_uri is not registered for this client")
    return client, uri


def validate_request(directory: Directory, q: dict[str, str], *, browser: str,
                     now: float) -> AuthRequest:
    """The request's checks; after the client and redirect URI are trusted, a refusal is
    a redirect with ``error`` (RFC 6749 4.1.2.1), raised as an HTTP exception."""
    client, uri = _client_and_redirect(directory, q)
    state = q.get("state", "")

    def refuse(error: str, description: str) -> web.HTTPSeeOther:
        params = {"error": error, "error_description": description}
        if state:
            params["state"] = state
        return _redirect(uri, params)

    if q.get("response_type") != "code":
        raise refuse("unsupported_response_type", "only response_type=code is supported")
    if not state:
        raise refuse("invalid_request", "state is required")
    scope = q.get("scope", "")
    if "openid" not in scope.split():
        raise refuse("invalid_scope", "scope must include openid")
    if not q.get("nonce"):
        raise refuse("invalid_request", "nonce is required")
    if q.get("code_challenge_method") != "S256":
        raise refuse("invalid_request", "PKCE is required: code_challenge_method=S256")
    if not _CHALLENGE.fullmatch(q.get("code_challenge", "")):
        raise refuse("invalid_request", "code_challenge must be a base64url SHA-256 (43 chars)")
    return AuthRequest(client.client_id, uri, scope, state, q["nonce"], q["code_challenge"],
                       secrets.token_urlsafe(24), browser, now + PENDING_TTL_S)


def page_headers(form_target: str | None = None) -> dict[str, str]:
    # The form posts here and is then redirected to the client: Chromium applies
    # form-action to that redirect too, so the client's origin is listed.
    action = "'self'" + (f" {form_target}" if form_target else "")
    return {
        "Content-Security-Policy": f"default-src 'none'; form-action {action}; "
        "frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        # Not no-referrer: under it the form's own POST would carry "Origin: null".
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


def error_page(status: int, message: str) -> web.Response:
    body = (f"<!doctype html><html lang=en><meta charset=utf-8><title>dev IdP: error</title>"
            f"<h1>Sign-in request refused</h1><p id=error>{html.escape(message)}</p>"
            "<p>regogate development IdP &mdash; not for production.</p></html>")
    return web.Response(status=status, text=body, content_type="text/html",
                        headers=page_headers())


def login_page(directory: Directory, req: AuthRequest, rid: str) -> str:
    client = directory.clients[req.client_id]
    rows = []
    for i, user in enumerate(directory.users.values()):
        detail = ", ".join(x for x in (user.email, " ".join(user.groups)) if x)
        checked = " checked" if i == 0 else ""
        rows.append(
            f'<li><label><input type=radio name=username value="{html.escape(user.username)}"'
            f'{checked}> <b>{html.escape(user.name or user.username)}</b> '
            f'({html.escape(user.username)}; {html.escape(detail)})</label></li>')
    return (
        "<!doctype html><html lang=en><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        "<title>regogate dev IdP: sign in</title>"
        "<h1>regogate development IdP</h1>"
        "<p><strong>FOR DEVELOPMENT ONLY, NOT FOR PRODUCTION.</strong> There are no passwords:"
        " pick the user to sign in as.</p>"
        f"<p><b>{html.escape(client.description or client.client_id)}</b> asks to sign you in"
        f" ({html.escape(req.client_id)}, scope {html.escape(req.scope)}).</p>"
        "<form method=post action=/authorize>"
        f"<input type=hidden name=rid value={html.escape(rid)}>"
        f"<input type=hidden name=csrf value={html.escape(req.csrf)}>"
        f"<fieldset><legend>Sign in as</legend><ul id=users>{''.join(rows)}</ul></fieldset>"
        "<button type=submit name=action value=approve id=sign-in>Sign in</button> "
        "<button type=submit name=action value=cancel id=cancel>Cancel</button>"
        "</form></html>")


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def browser_id(request: web.Request) -> tuple[str, bool]:
    """This browser's binding id (from our cookie, or new: then it must be set)."""
    current = request.cookies.get(BROWSER_COOKIE, "")
    if re.fullmatch(r"[A-Za-z0-9_\-]{32}", current):
        return current, False
    return secrets.token_urlsafe(24), True


def check_login_form(req: AuthRequest | None, form: dict[str, str], request: web.Request,
                     issuer: str) -> AuthRequest:
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if (site is not None and site != "same-origin") or (
            origin is not None and origin != origin_of(issuer)):
        raise AuthorizeError(403, "the login form was posted from another origin")
    if req is None:
        raise AuthorizeError(400, "this sign-in request is unknown or has expired; start again")
    cookie = request.cookies.get(BROWSER_COOKIE, "")
    if not hmac.compare_digest(cookie.encode(), req.browser.encode()):
        raise AuthorizeError(403, "this sign-in request was opened in another browser")
    if not hmac.compare_digest(form.get("csrf", "").encode(), req.csrf.encode()):
        raise AuthorizeError(403, "the login form's CSRF token is missing or wrong")
    return req
