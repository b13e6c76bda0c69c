"""Workspace sessions and pending sign-ins, held in this process's memory.

A session id is 256 random bits, handed to the browser only in the ``HttpOnly`` cookie and
stored here by its SHA-256 (a heap dump or a log line of the table gives nobody a cookie).
A session holds the user's access token, re-verified by ``pep.auth`` on every use (cached by
token hash, so cheap), so revocation through the deny list and key rotation apply to it as
to any bearer token. It ends at the token's ``exp``, after ``session_idle_s`` without use,
or ``session_max_s`` after sign-in, whichever comes first; the table is bounded
(``max_sessions``, oldest evicted).

Memory, not a shared store: with several gateway replicas behind one address, route a
browser to the same replica (sticky sessions) or it is asked to sign in again; nothing is
ever shared insecurely (docs/audit.md "Signing in").
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


def _key(opaque_id: str) -> str:
    return hashlib.sha256(opaque_id.encode()).hexdigest()


@dataclass(slots=True)
class Session:
    access_token: str
    csrf_token: str
    subject: str
    issuer: str
    name: str | None
    email: str | None
    created: float
    last_seen: float
    expires_at: float  # min(token exp, created + session_max_s)

    def user(self) -> dict[str, str | None]:
        return {"subject": self.subject, "issuer": self.issuer, "name": self.name,
                "email": self.email}


@dataclass(frozen=True, slots=True)
class PendingLogin:
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    expires_at: float


class Expired(Exception):
    """The session existed and has ended (exp, idle or maximum age)."""


class SessionStore:
    def __init__(self, *, idle_s: float, max_s: float, max_sessions: int, login_timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.idle_s, self.max_s = idle_s, max_s
        self._max = max_sessions
        self._login_timeout_s = login_timeout_s
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._pending: OrderedDict[str, PendingLogin] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    # -- sign-in in progress -----------------------------------------------------------------

    def start_login(self, redirect_uri: str) -> tuple[str, PendingLogin]:
        now = self.clock()
        while self._pending and (len(self._pending) >= self._max
                                 or next(iter(self._pending.values())).expires_at < now):
            self._pending.popitem(last=False)
        login_id = secrets.token_urlsafe(32)
        pending = PendingLogin(
            state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
            # RFC 7636 4.1: 43-128 unreserved characters; 64 bytes -> 86 characters.
            code_verifier=secrets.token_urlsafe(64), redirect_uri=redirect_uri,
            expires_at=now + self._login_timeout_s)
        self._pending[_key(login_id)] = pending
        return login_id, pending

    def take_login(self, login_id: str) -> PendingLogin | None:
        """The pending sign-in, once (a replayed callback finds nothing)."""
        pending = self._pending.pop(_key(login_id), None)
        if pending is None or pending.expires_at < self.clock():
            return None
        return pending

    # -- sessions ----------------------------------------------------------------------------

    def create(self, *, access_token: str, token_exp: float | None, subject: str, issuer: str,
               name: str | None, email: str | None) -> tuple[str, Session]:
        now = self.clock()
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        limit = now + self.max_s
        session = Session(
            access_token=access_token, csrf_token=secrets.token_urlsafe(32), subject=subject,
            issuer=issuer, name=name, email=email, created=now, last_seen=now,
            expires_at=limit if token_exp is None else min(token_exp, limit))
        session_id = secrets.token_urlsafe(32)
        self._sessions[_key(session_id)] = session
        return session_id, session

    def get(self, session_id: str) -> Session | None:
        """The live session (its idle clock restarted), None for an unknown id; raises
        ``Expired`` (and forgets it) for one that has ended."""
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = self.clock()
        if now >= session.expires_at or now - session.last_seen >= self.idle_s:
            del self._sessions[key]
            raise Expired()
        session.last_seen = now
        self._sessions.move_to_end(key)
        return session

    def delete(self, session_id: str) -> bool:
        return self._sessions.pop(_key(session_id), None) is not None
