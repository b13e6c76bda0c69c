"""MCP sessions, bound to the user who opened them (GUIDE.md 3.16).

The gateway hands the client its own ``Mcp-Session-Id`` (random, 256 bits) and keeps the
upstream's session id to itself. A session is found only by its id *and* its owner (issuer
+ subject): someone else presenting the id gets the same 404 as for an id that never existed.
Sessions live in this process (``regogate serve`` replicas need sticky routing for MCP;
docs/mcp.md); idle ones expire, and each user holds a bounded number.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pep.principal import Principal


@dataclass(slots=True)
class McpSession:
    id: str
    issuer: str
    subject: str
    server: str
    upstream_id: str | None
    protocol_version: str | None
    last_used: float = field(default=0.0)


class SessionStore:
    def __init__(self, *, idle_s: float, max_per_user: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._idle_s = idle_s
        self._max_per_user = max_per_user
        self._clock = clock
        self._sessions: OrderedDict[str, McpSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal, server: str, upstream_id: str | None,
               protocol_version: str | None) -> McpSession:
        self._expire()
        mine = [s for s in self._sessions.values()
                if s.issuer == principal.issuer and s.subject == principal.sub]
        for old in mine[: max(0, len(mine) - self._max_per_user + 1)]:
            del self._sessions[old.id]  # the user's least recently used go first
        session = McpSession("mcps_" + secrets.token_urlsafe(32), principal.issuer,
                             principal.sub, server, upstream_id, protocol_version, self._clock())
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str, principal: Principal, server: str) -> McpSession | None:
        self._expire()
        session = self._sessions.get(session_id)
        if session is None:
            return None
        owner = hmac.compare_digest(session.subject, principal.sub) and \
            session.issuer == principal.issuer
        if not owner or session.server != server:
            return None
        session.last_used = self._clock()
        self._sessions.move_to_end(session_id)
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        cutoff = self._clock() - self._idle_s
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_used >= cutoff:
                return
            del self._sessions[oldest.id]
