"""The workspace's sign-in endpoints, and the session step the auditor API takes.

    GET  /audit/login      start: pending sign-in (state, nonce, PKCE verifier) kept here,
                           bound to the browser by a short-lived Lax cookie; 302 to the IdP
    GET  /audit/callback   state -> code exchange -> ID token (issuer, audience, nonce) and
                           access token verified by pep.auth -> policy (audit.read, endpoint
                           "session") -> session; 303 to /audit/. Refusals are HTML pages.
    GET  /audit/session    who is signed in, and the session's CSRF token (JSON)
    POST /audit/logout     CSRF-checked; ends the session, clears the cookie

Cookies. The session cookie is ``HttpOnly; SameSite=Strict; Path=/audit`` and ``Secure``
unless the page is served on a loopback address. The pending sign-in cookie has to survive
the IdP's top-level redirect back to us, which Strict cookies do not when the IdP is another
site, so it is ``SameSite=Lax; Path=/audit/callback`` and lives ``login_timeout_s``.

CSRF. Every call that uses the session (auditor API reads included) must send the session's
synchronizer token in ``X-CSRF-Token``; ``Sec-Fetch-Site``, when the browser sends it, must be
``same-origin``, and ``Origin``, when sent, must be this host. A refused attempt is a 403
``csrf_failed``, recorded as ``request.rejected``.
"""

from __future__ import annotations

import hmac
import html
import time
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from yarl import URL

from pep import appkeys
from pep.auditing import event
from pep.auth.fetch import is_loopback_host
from pep.errors import BadRequest, Forbidden, GatewayError, PolicyDenied, Unauthorized, Unavailable
from pep.principal import Principal
from pep.steps import audit, exchange_for, refuse_ambiguous_credentials
from pep.workspace.cookie import LOGIN_COOKIE, SESSION_COOKIE, session_cookie
from pep.workspace.oidc import RelyingParty, SignInError
from pep.workspace.sessions import Expired, Session, SessionStore, open_session_store

CSRF_HEADER = "X-CSRF-Token"
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_CALLBACK_PARAMS = ("code", "state", "iss", "error", "error_description", "session_state",
                    "scope", "error_uri")


class Workspace:
    """The sign-in component: settings, the relying party, the session table."""

    def __init__(self, app: web.Application, clock: Callable[[], float] = time.time) -> None:
        settings = app[appkeys.SETTINGS]
        ws = settings.workspace
        self.settings = ws
        issuers = settings.identity.issuers
        issuer = next((i for i in issuers if i.issuer == ws.issuer), issuers[0])
        self.issuer = issuer.issuer
        self.issuer_name = ws.issuer_name or URL(issuer.issuer).host or issuer.issuer
        self.sessions: SessionStore = open_session_store(ws, clock)
        self.rp: RelyingParty | None = None
        if ws.client_id is not None:
            self.rp = RelyingParty(ws, issuer, settings.identity, app[appkeys.HTTP_SESSION])

    def redirect_uri(self, request: web.Request) -> str | None:
        if self.settings.redirect_uri is not None:
            return self.settings.redirect_uri
        # Derived from Host only where nobody but this machine can be the browser.
        if is_loopback_host(request.url.host) and request.host:
            return f"http://{request.host}/audit/callback"
        return None


WORKSPACE: web.AppKey[Workspace] = web.AppKey("workspace")


# -- helpers ---------------------------------------------------------------------------------

def _secure(request: web.Request) -> bool:
    return not is_loopback_host(request.url.host)


def _set_cookie(resp: web.StreamResponse, request: web.Request, name: str, value: str, *,
                path: str, samesite: str, max_age: float) -> None:
    resp.set_cookie(name, value, path=path, httponly=True, samesite=samesite,
                    max_age=max(0, int(max_age)), secure=_secure(request))


def _clear_cookie(resp: web.StreamResponse, request: web.Request, name: str, path: str) -> None:
    _set_cookie(resp, request, name, "", path=path,
                samesite="Lax" if name == LOGIN_COOKIE else "Strict", max_age=0)


def page(status: int, title: str, body_html: str) -> web.Response:
    doc = ("<!doctype html><html lang=en><head><meta charset=utf-8>"
           "<meta name=viewport content='width=device-width, initial-scale=1'>"
           f"<title>regogate audit: {html.escape(title)}</title>"
           "<link rel=stylesheet href=/audit/app.css></head><body>"
           f"<header><h1>regogate audit</h1></header><main id=sign-in-result "
           f"data-status={status}><h2>{html.escape(title)}</h2>{body_html}"
           "<p><a id=sign-in-again href=/audit/login>Sign in again</a> &middot; "
           "<a href=/audit/>Back to the workspace</a></p></main></body></html>")
    return web.Response(status=status, text=doc, content_type="text/html",
                        headers=_PAGE_HEADERS)


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _as_error(exc: SignInError) -> GatewayError:
    if exc.status == 400:
        return BadRequest(exc.message, code=exc.code)
    if exc.status == 401:
        return Unauthorized(exc.message, code=exc.code)
    return Unavailable(exc.message, code=exc.code)


def _workspace(request: web.Request) -> Workspace:
    return request.app[WORKSPACE]


def check_fetch_site(request: web.Request, allowed: tuple[str, ...] = ("same-origin",)) -> None:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in allowed:
        raise Forbidden(f"cross-site request refused (Sec-Fetch-Site: {site[:20]})",
                        code="csrf_failed")
    origin = request.headers.get("Origin")
    # "null": an opaque origin, or our own page under Referrer-Policy: no-referrer (Fetch
    # sends null for its non-GET requests); then only Sec-Fetch-Site can vouch for it.
    if origin == "null" and site is None:
        raise Forbidden("request from an opaque origin refused", code="csrf_failed")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.host:
        raise Forbidden("request from another origin refused", code="csrf_failed")


def check_csrf(request: web.Request, session: Session) -> None:
    check_fetch_site(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        raise Forbidden(f"missing {CSRF_HEADER} header (the session's CSRF token)",
                        code="csrf_failed")
    if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
        raise Forbidden(f"wrong {CSRF_HEADER} for this session", code="csrf_failed")


async def _record_failure(request: web.Request, err: GatewayError) -> None:
    x = exchange_for(request)
    if not x.terminal_recorded:
        request.app[appkeys.METRICS].inc("auth_failures_total", code=err.code)
        await audit(request, event("auth.failure", x, error=err, extra={"code": err.code}),
                    required=False)


async def live_session(request: web.Request, cookie: str) -> Session:
    """The session the cookie names; 401 (recorded as ``auth.failure``) when there is none."""
    try:
        session = await _workspace(request).sessions.get(cookie) if cookie else None
    except Expired:
        err = Unauthorized("the workspace session has expired; sign in again",
                           code="session_expired")
        await _record_failure(request, err)
        raise err from None
    if session is None:
        err = Unauthorized("no such workspace session; sign in", code="session_unknown")
        await _record_failure(request, err)
        raise err
    return session


def _principal(session: Session) -> Principal:
    return Principal(sub=session.subject, issuer=session.issuer, name=session.name,
                     email=session.email)


async def session_credentials(request: web.Request) -> Mapping[str, str] | None:
    """For the auditor API: None when the request carries no workspace cookie (its bearer
    token is used); else the session's token, once the CSRF checks pass. Cookie and bearer
    together are refused (400)."""
    cookie = session_cookie(request.headers)
    if cookie is None:
        return None
    refuse_ambiguous_credentials(request)
    session = await live_session(request, cookie)
    check_csrf(request, session)
    return {"Authorization": f"Bearer {session.access_token}"}


# -- handlers --------------------------------------------------------------------------------

async def login(request: web.Request) -> web.StreamResponse:
    ws = _workspace(request)
    if ws.rp is None:
        return page(503, "Sign-in is not configured",
                    "<p>Set <code>workspace.client_id</code> (the gateway's client at the"
                    " identity provider) to sign in here; the API still takes bearer tokens.</p>")
    redirect_uri = ws.redirect_uri(request)
    if redirect_uri is None:
        return page(503, "Sign-in is not configured",
                    "<p>Set <code>workspace.redirect_uri</code>: it is derived from the request"
                    " only on loopback addresses.</p>")
    try:
        endpoint = (await ws.rp.endpoints()).authorization
        login_id, pending = await ws.sessions.start_login(redirect_uri)
    except SignInError as exc:
        return page(exc.status, "The identity provider is unavailable",
                    f"<p id=reason>{html.escape(exc.message)}</p>")
    except GatewayError as exc:  # the session store (503)
        return page(exc.status, "Sign-in is unavailable",
                    f"<p id=reason>{html.escape(exc.message)}</p>")
    resp = web.Response(status=302, headers={"Location": ws.rp.authorization_url(endpoint, pending),
                                             "Cache-Control": "no-store"})
    _set_cookie(resp, request, LOGIN_COOKIE, login_id, path="/audit/callback", samesite="Lax",
                max_age=ws.settings.login_timeout_s)
    return resp


def _callback_params(request: web.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in request.query:
        if name not in _CALLBACK_PARAMS:
            continue
        if len(request.query.getall(name)) > 1:
            raise SignInError(400, "invalid_callback", f"parameter {name!r} is repeated")
        out[name] = request.query[name]
    return out


async def callback(request: web.Request) -> web.StreamResponse:
    ws = _workspace(request)
    x = exchange_for(request)
    try:
        resp = await _complete_sign_in(request, ws)
    except PolicyDenied as err:
        # authorize() recorded the policy.deny; the user is told who they are and why.
        p = x.principal
        who = "this user" if p is None else html.escape(
            (p.name or p.sub) + (f" ({p.email})" if p.email else ""))
        reasons = err.details.get("reasons") or [err.code]
        resp = page(403, "Not allowed to read the audit trail",
                    f"<p id=refused>You are signed in as <b>{who}</b>, but the policy does not"
                    " allow you to read the audit trail.</p>"
                    f"<p>Reason: <code id=reason>{html.escape(', '.join(reasons))}</code> "
                    f"&mdash; {html.escape(err.message)}</p>")
    except SignInError as exc:
        await _record_failure(request, _as_error(exc))
        resp = page(exc.status, "Sign-in failed",
                    f"<p id=reason data-code={html.escape(exc.code)}>"
                    f"{html.escape(exc.message)}</p>")
    except GatewayError as err:
        await _record_failure(request, err)
        resp = page(err.status, "Sign-in failed",
                    f"<p id=reason data-code={html.escape(err.code)}>"
                    f"{html.escape(err.message)}</p>")
    if request.cookies.get(LOGIN_COOKIE) is not None:
        _clear_cookie(resp, request, LOGIN_COOKIE, "/audit/callback")
    return resp


async def _complete_sign_in(request: web.Request, ws: Workspace) -> web.StreamResponse:
    from pep.access import authorize  # noqa: PLC0415 - pep.access imports the pipeline steps

    if ws.rp is None:
        raise SignInError(503, "sign_in_disabled", "sign-in is not configured")
    q = _callback_params(request)
    pending = await ws.sessions.take_login(request.cookies.get(LOGIN_COOKIE, ""))
    if pending is None:
        raise SignInError(400, "login_state_missing",
                          "this sign-in was not started in this browser, was already used,"
                          " or took too long; start again")
    if not hmac.compare_digest(q.get("state", "").encode(), pending.state.encode()):
        raise SignInError(400, "state_mismatch",
                          "the state returned by the identity provider does not match")
    if "iss" in q and q["iss"] != ws.issuer:  # RFC 9207: another IdP answered (mix-up)
        raise SignInError(400, "issuer_mismatch", "the answer came from another issuer")
    if "error" in q:
        code = "".join(c for c in q["error"] if c.isalnum() or c == "_")[:64]
        raise SignInError(401, "sign_in_refused",
                          f"the identity provider did not sign you in ({code})")
    if not q.get("code"):
        raise SignInError(400, "missing_code", "the identity provider sent no code")
    tokens = await ws.rp.exchange(q["code"], pending)
    authenticator = request.app[appkeys.AUTHENTICATOR]
    id_claims = await authenticator.verify_id_token(
        tokens.id_token, issuer=ws.issuer, client_id=ws.rp.client_id, nonce=pending.nonce)
    bearer = {"Authorization": f"Bearer {tokens.access_token}"}
    principal = await authorize(request, api="audit.read", params={"endpoint": "session"},
                                credentials=bearer)
    if principal.sub != id_claims["sub"] or principal.issuer != id_claims["iss"]:
        raise SignInError(401, "subject_mismatch",
                          "the ID token and the access token name different users")
    session_id, session = await ws.sessions.create(
        access_token=tokens.access_token, token_exp=principal.expires_at,
        subject=principal.sub, issuer=principal.issuer, name=principal.name,
        email=principal.email)
    x = exchange_for(request)
    try:
        await audit(request, event("session.login", x, status=303,
                                   extra={"session_expires_at": int(session.expires_at)}),
                    required=True)
    except GatewayError:
        await ws.sessions.delete(session_id)  # no record, no session: fail closed
        raise
    resp = web.Response(status=303, headers={"Location": "/audit/", "Cache-Control": "no-store"})
    _set_cookie(resp, request, SESSION_COOKIE, session_id, path="/audit", samesite="Strict",
                max_age=session.expires_at - ws.sessions.clock())
    return resp


async def session_status(request: web.Request) -> web.Response:
    check_fetch_site(request, ("same-origin", "none"))
    ws = _workspace(request)
    anonymous = {"signed_in": False, "sign_in_enabled": ws.rp is not None,
                 "issuer": ws.issuer, "issuer_name": ws.issuer_name, "login_url": "/audit/login"}
    cookie = session_cookie(request.headers)
    if cookie is None:
        return _json(anonymous)
    try:
        session = await ws.sessions.get(cookie) if cookie else None
        reason = "unknown"
    except Expired:
        session, reason = None, "expired"
    if session is None:
        resp = _json({**anonymous, "reason": reason})
        _clear_cookie(resp, request, SESSION_COOKIE, "/audit")
        return resp
    return _json({"signed_in": True, "user": session.user(), "csrf_token": session.csrf_token,
                  "expires_at": int(session.expires_at), "idle_timeout_s": ws.sessions.idle_s,
                  "issuer": ws.issuer, "issuer_name": ws.issuer_name})


async def logout(request: web.Request) -> web.Response:
    cookie = session_cookie(request.headers)
    session = await live_session(request, cookie or "")
    check_csrf(request, session)
    assert cookie is not None
    ws = _workspace(request)
    await ws.sessions.delete(cookie)
    x = exchange_for(request)
    x.principal = _principal(session)
    await audit(request, event("session.logout", x, status=200), required=False)
    resp = _json({"signed_in": False})
    _clear_cookie(resp, request, SESSION_COOKIE, "/audit")
    return resp


def setup_workspace_routes(app: web.Application,
                           clock: Callable[[], float] = time.time) -> None:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        workspace = Workspace(app, clock)
        app[WORKSPACE] = workspace
        try:
            yield
        finally:
            await workspace.sessions.close()

    app.cleanup_ctx.append(ctx)
    app.router.add_get("/audit/login", login)
    app.router.add_get("/audit/callback", callback)
    app.router.add_get("/audit/session", session_status)
    app.router.add_post("/audit/logout", logout)
