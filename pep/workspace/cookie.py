"""The workspace session cookie, and the rule that keeps it out of the model API.

The model-calling API is bearer-only: it never reads this cookie, so a request carrying only
the cookie has no credential (401). A request carrying the cookie *and* a bearer token is
refused (400 ``ambiguous_credentials``): a page must never be able to ride on a signed-in
user's session, and a client that mixes the two has a bug worth surfacing. Kept free of
imports beyond the standard library: ``pep.steps`` runs it on every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookies import CookieError, SimpleCookie
from typing import Any

SESSION_COOKIE = "regogate_ws"
LOGIN_COOKIE = "regogate_ws_login"


def _all(headers: Mapping[str, str], name: str) -> list[str]:
    getall: Any = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, ()))
    return [v for k, v in headers.items() if k.lower() == name.lower()]


def session_cookie(headers: Mapping[str, str]) -> str | None:
    """The workspace cookie's value ('' when present but empty), or None. Cheap when the
    request has no Cookie header at all, as every SDK request does."""
    raw = _all(headers, "Cookie")
    if not raw or not any(SESSION_COOKIE in v for v in raw):
        return None
    for value in raw:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value)
        except CookieError:
            # Unparseable, yet it names our cookie: treat it as present (never ignore it).
            return ""
        if SESSION_COOKIE in jar:
            return jar[SESSION_COOKIE].value
    return None


def has_credential_header(headers: Mapping[str, str]) -> bool:
    return bool(_all(headers, "Authorization") or _all(headers, "x-api-key"))
