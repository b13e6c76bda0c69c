"""Counters in Redis, shared by every gateway replica.

Layout: one hash per (window, window start, scope, id), e.g.
``regogate:usage:day:1735689600:user:alice`` with fields r, pt, ct, c, e (requests, prompt
tokens, completion tokens, cost in nano-USD, estimated requests). The window start in the
key makes rollover free; each key expires a minute after its window ends.

- record: one Lua script adds to every key of the request (user, teams, client x 4 windows)
  and refreshes TTLs -- atomic, one round trip.
- snapshot: one pipelined round trip of HMGETs.
- Redis Cluster is not supported: the script touches keys in several hash slots.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pep.usage.counters import FIELDS, ZERO, Bounds, CounterTracker, Subject
from pep.usage.tracker import UsageUnavailable
from pep.usage.windows import WINDOWS

_HFIELDS = ("r", "pt", "ct", "c", "e")
assert len(_HFIELDS) == len(FIELDS)
# Keys outlive their window slightly so a replica with a lagging clock still adds to (and
# reads) the window it believes is current.
TTL_GRACE_S = 60

_ADD = """
local f = {'r', 'pt', 'ct', 'c', 'e'}
for i, key in ipairs(KEYS) do
  for j = 1, 5 do
    local d = tonumber(ARGV[j])
    if d ~= 0 then redis.call('HINCRBY', key, f[j], d) end
  end
  redis.call('EXPIRE', key, ARGV[5 + i])
end
return #KEYS
"""

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


def redact_url(url: str) -> str:
    """The store URL without its password, for readiness output and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _unavailable(exc: BaseException) -> UsageUnavailable:
    return UsageUnavailable(f"usage store (redis) failed: {type(exc).__name__}: {exc}"[:300])


class RedisTracker(CounterTracker):
    kind = "redis"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._client: aioredis.Redis | None = None
        self._script: Any = None
        self._prefix = self.settings.key_prefix

    def _key(self, window: str, start: int, subject: Subject) -> str:
        return f"{self._prefix}{window}:{start}:{subject[0]}:{subject[1]}"

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise UsageUnavailable("usage store (redis) is not started")
        return self._client

    async def start(self) -> None:
        s = self.settings
        password = s.redis_password.get_secret_value() if s.redis_password else None
        # No connection is made here: a Redis that is down at boot makes the gateway not
        # ready (and requests fail per on_store_error), not crash.
        self._client = aioredis.Redis.from_url(
            s.store,
            password=password,
            socket_timeout=s.timeout_s,
            socket_connect_timeout=s.timeout_s,
            decode_responses=False,
        )
        self._script = self._client.register_script(_ADD)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _read(self, bounds: Bounds, subs: list[Subject]) -> list[Sequence[int]]:
        keys = [self._key(w, bounds[w][0], s) for s in subs for w in WINDOWS]
        return await self._hmget_all(keys)

    async def _hmget_all(self, keys: list[str]) -> list[Sequence[int]]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, _HFIELDS)
                replies = await pipe.execute()
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        out: list[Sequence[int]] = []
        for reply in replies:
            if not any(reply):
                out.append(ZERO)
            else:
                out.append(tuple(int(v) if v is not None else 0 for v in reply))
        return out

    async def _add(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...],
                   now: float) -> None:
        keys: list[str] = []
        ttls: list[int] = []
        for w in WINDOWS:
            start, end = bounds[w]
            ttl = math.ceil(end - now) + TTL_GRACE_S
            for s in subs:
                keys.append(self._key(w, start, s))
                ttls.append(ttl)
        if self._script is None:
            raise UsageUnavailable("usage store (redis) is not started")
        try:
            await self._script(keys=keys, args=[*delta, *ttls])
        except _FAILURES as exc:
            raise _unavailable(exc) from exc

    async def _list(self, bounds: Bounds, window: str,
                    scope: str | None) -> list[tuple[str, str, Sequence[int]]]:
        head = f"{self._prefix}{window}:{bounds[window][0]}:"
        pattern = _glob_escape(head) + (f"{_glob_escape(scope)}:*" if scope else "*")
        try:
            keys = [k.decode() async for k in self.client.scan_iter(match=pattern, count=1000)]
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        rows = await self._hmget_all(keys)
        out: list[tuple[str, str, Sequence[int]]] = []
        for key, row in zip(keys, rows, strict=True):
            s, _, ident = key[len(head):].partition(":")
            if row is not ZERO:  # expired between SCAN and HMGET
                out.append((s, ident, row))
        return out

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"store": "redis", "url": redact_url(self.settings.store)}
        try:
            await self.client.ping()
        except (UsageUnavailable, *_FAILURES) as exc:
            detail["error"] = type(exc).__name__
            return False, detail
        return True, detail
