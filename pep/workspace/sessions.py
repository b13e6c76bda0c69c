"""Workspace sessions and pending sign-ins, held in this process's memory.

A session id is 256 random bits, handed to the browser only in the ``HttpOnly`` cookie and
stored here by its SHA-256 (a heap dump or a log line of the table gives nobody a cookie).
A session holds the user's access token, re-verified by ``pep.auth`` on every use (cached by
token hash, so cheap), so revocation through the deny list and key rotation apply to it as
to any bearer token. It ends at the token's ``exp``, after ``session_idle_s`` without use,
or ``session_max_s`` after sign-in, whichever comes first; the table is bounded
(``max_sessions``, oldest evicted).

In memory by default (one process). With ``serve --workers`` or several replicas, set
``workspace.session_store: redis://...``: every process then sees the same sessions and
pending sign-ins (the Redis holds access tokens: protect it like the IdP's own stores).
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from pep.errors import Unavailable
from pep.workspace.settings import WorkspaceSettings


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


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable(f"the workspace session store cannot be used ({type(exc).__name__})",
                       code="session_store_unavailable")


class SessionStore:
    """In memory: one process. ``open_session_store`` picks this or ``RedisSessionStore``."""

    def __init__(self, *, idle_s: float, max_s: float, max_sessions: int, login_timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.idle_s, self.max_s = idle_s, max_s
        self._max = max_sessions
        self.login_timeout_s = login_timeout_s
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._pending: OrderedDict[str, PendingLogin] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    async def close(self) -> None:
        self._sessions.clear()
        self._pending.clear()

    # -- what both stores share ------------------------------------------------------------

    def _new_login(self, redirect_uri: str) -> tuple[str, PendingLogin]:
        return secrets.token_urlsafe(32), PendingLogin(
            state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
            # RFC 7636 4.1: 43-128 unreserved characters; 64 bytes -> 86 characters.
            code_verifier=secrets.token_urlsafe(64), redirect_uri=redirect_uri,
            expires_at=self.clock() + self.login_timeout_s)

    def _new_session(self, *, access_token: str, token_exp: float | None, subject: str,
                     issuer: str, name: str | None, email: str | None) -> tuple[str, Session]:
        now = self.clock()
        limit = now + self.max_s
        return secrets.token_urlsafe(32), Session(
            access_token=access_token, csrf_token=secrets.token_urlsafe(32), subject=subject,
            issuer=issuer, name=name, email=email, created=now, last_seen=now,
            expires_at=limit if token_exp is None else min(token_exp, limit))

    def _ended(self, session: Session) -> bool:
        now = self.clock()
        return now >= session.expires_at or now - session.last_seen >= self.idle_s

    # -- sign-in in progress -----------------------------------------------------------------

    async def start_login(self, redirect_uri: str) -> tuple[str, PendingLogin]:
        now = self.clock()
        while self._pending and (len(self._pending) >= self._max
                                 or next(iter(self._pending.values())).expires_at < now):
            self._pending.popitem(last=False)
        login_id, pending = self._new_login(redirect_uri)
        self._pending[_key(login_id)] = pending
        return login_id, pending

    async def take_login(self, login_id: str) -> PendingLogin | None:
        """The pending sign-in, once (a replayed callback finds nothing)."""
        pending = self._pending.pop(_key(login_id), None)
        if pending is None or pending.expires_at < self.clock():
            return None
        return pending

    # -- sessions ----------------------------------------------------------------------------

    async def create(self, **kw: Any) -> tuple[str, Session]:
        while len(self._sessions) >= self._max:
            self._sessions.popitem(last=False)
        session_id, session = self._new_session(**kw)
        self._sessions[_key(session_id)] = session
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        """The live session (its idle clock restarted), None for an unknown id; raises
        ``Expired`` (and forgets it) for one that has ended."""
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if self._ended(session):
            del self._sessions[key]
            raise Expired()
        session.last_seen = self.clock()
        self._sessions.move_to_end(key)
        return session

    async def delete(self, session_id: str) -> bool:
        return self._sessions.pop(_key(session_id), None) is not None


class RedisSessionStore(SessionStore):
    """Shared by every gateway process (``serve --workers``, replicas): the same keys by
    hash, JSON values, Redis TTLs as the outer bound (a pending sign-in lives
    ``login_timeout_s``, a session until its ``expires_at``), ``GETDEL`` so a pending
    sign-in is taken once across processes. Any Redis failure is a 503: fail closed."""

    def __init__(self, settings: WorkspaceSettings, clock: Callable[[], float] = time.time) -> None:
        super().__init__(idle_s=settings.session_idle_s, max_s=settings.session_max_s,
                         max_sessions=settings.max_sessions,
                         login_timeout_s=settings.login_timeout_s, clock=clock)
        import redis.asyncio as aioredis  # noqa: PLC0415 - only when configured

        password = settings.redis_password.get_secret_value() if settings.redis_password else None
        self._prefix = settings.redis_key_prefix
        self._client = aioredis.Redis.from_url(
            settings.session_store, password=password, socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s, decode_responses=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, op: str, *args: Any, **kw: Any) -> Any:
        from redis.exceptions import RedisError  # noqa: PLC0415

        try:
            return await getattr(self._client, op)(*args, **kw)
        except (RedisError, OSError, TimeoutError) as exc:
            raise _unavailable(exc) from exc

    async def start_login(self, redirect_uri: str) -> tuple[str, PendingLogin]:
        login_id, pending = self._new_login(redirect_uri)
        await self._call("set", f"{self._prefix}login:{_key(login_id)}",
                         orjson.dumps(asdict(pending)), ex=max(1, math.ceil(self.login_timeout_s)))
        return login_id, pending

    async def take_login(self, login_id: str) -> PendingLogin | None:
        raw = await self._call("getdel", f"{self._prefix}login:{_key(login_id)}")
        if raw is None:
            return None
        pending = PendingLogin(**orjson.loads(raw))
        return None if pending.expires_at < self.clock() else pending

    async def create(self, **kw: Any) -> tuple[str, Session]:
        session_id, session = self._new_session(**kw)
        ttl = max(1, math.ceil(session.expires_at - self.clock()))
        await self._call("set", f"{self._prefix}session:{_key(session_id)}",
                         orjson.dumps(asdict(session)), ex=ttl)
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        key = f"{self._prefix}session:{_key(session_id)}"
        raw = await self._call("get", key)
        if raw is None:
            return None
        session = Session(**orjson.loads(raw))
        if self._ended(session):
            await self._call("delete", key)
            raise Expired()
        session.last_seen = self.clock()
        await self._call("set", key, orjson.dumps(asdict(session)), keepttl=True, xx=True)
        return session

    async def delete(self, session_id: str) -> bool:
        return bool(await self._call("delete", f"{self._prefix}session:{_key(session_id)}"))


def open_session_store(settings: WorkspaceSettings,
                       clock: Callable[[], float] = time.time) -> SessionStore:
    if settings.session_store == "memory":
        return SessionStore(idle_s=settings.session_idle_s, max_s=settings.session_max_s,
                            max_sessions=settings.max_sessions,
                            login_timeout_s=settings.login_timeout_s, clock=clock)
    return RedisSessionStore(settings, clock)
