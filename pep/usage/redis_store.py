"""Counters in Redis, shared by every gateway replica.

Layout: one hash per (window, window start, scope, id), e.g.
``regogate:usage:day:1735689600:user:alice`` with fields r, pt, ct, c, e (requests, prompt
tokens, completion tokens, cost in nano-USD, estimated requests). The window start in the
key makes rollover free; each key expires a minute after its window ends.

- reserve (admission): one Lua script (EVALSHA) reads the rows the quota obligation names,
  applies ``pep.usage.admission.fit`` to them and, only if every limit holds, adds the
  reservation to every key of the request and refreshes TTLs -- all or nothing, one round
  trip, atomic across replicas (Redis runs a script without interleaving other commands).
- settle/release: one script adds (real - reserved) to the keys that still exist.
- record: one Lua script adds to every key of the request (user, teams, client x 4 windows)
  and refreshes TTLs -- atomic, one round trip.
- snapshot: one script call returning every row (HMGETs inside), one round trip.
- Redis Cluster is not supported: the script touches keys in several hash slots.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from typing import Any


import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pep.usage.admission import Check
from pep.usage.counters import FIELDS, ZERO, Bounds, CounterTracker, Subject
from pep.usage.tracker import UsageUnavailable
from pep.usage.windows import WINDOWS
from pep.settings_base import masked

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

# pep.usage.admission.fit, in Lua. KEYS: the request's rows (subject-major, WINDOWS order).
# ARGV: prompt, out, choices, nano-USD per prompt token, per output token, number of checks,
# then 4 per check (row index, metric, limit, shrink 1|0), then one TTL per window (keys are
# subject-major, so key i is in window (i - 1) % #windows).
# Returns {0, out, nanos, used per check...} when reserved, else {1, check, used, check, used, ...}.
_RESERVE = """
local prompt, out, choices = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = tonumber(ARGV[6])
local failed, useds = {}, {}
local shrunk, shrunk_used = 0, 0
for c = 1, n do
  local b = 6 + (c - 1) * 4
  local row = redis.call('HMGET', KEYS[tonumber(ARGV[b + 1])], 'r', 'pt', 'ct', 'c')
  local metric, limit = ARGV[b + 2], tonumber(ARGV[b + 3])
  local pt, ct = tonumber(row[2] or 0), tonumber(row[3] or 0)
  local used
  if metric == 'requests' then used = tonumber(row[1] or 0)
  elseif metric == 'prompt_tokens' then used = pt
  elseif metric == 'completion_tokens' then used = ct
  elseif metric == 'tokens' then used = pt + ct
  else used = tonumber(row[4] or 0) end
  useds[c] = used
  if used >= limit or ((metric == 'tokens' or metric == 'prompt_tokens')
                       and used + prompt > limit) then
    failed[#failed + 1] = c - 1
    failed[#failed + 1] = used
  elseif ARGV[b + 4] == '1' then
    local left = limit - used
    if metric == 'tokens' then left = left - prompt end
    local room = math.floor(left / choices)
    if room < out then out, shrunk, shrunk_used = room, c, used end
  end
end
if #failed == 0 and out < 1 and shrunk > 0 then failed = {shrunk - 1, shrunk_used} end
if #failed > 0 then
  table.insert(failed, 1, 1)
  return failed
end
local completion = out * choices
local nanos = math.floor(prompt * tonumber(ARGV[4]) + completion * tonumber(ARGV[5]) + 0.5)
local ttl0 = 6 + n * 4
local windows = #ARGV - ttl0
for i, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'r', 1)
  if prompt ~= 0 then redis.call('HINCRBY', key, 'pt', prompt) end
  if completion ~= 0 then redis.call('HINCRBY', key, 'ct', completion) end
  if nanos ~= 0 then redis.call('HINCRBY', key, 'c', nanos) end
  redis.call('EXPIRE', key, ARGV[ttl0 + 1 + (i - 1) % windows])
end
local reply = {0, out, nanos}
for c = 1, n do reply[3 + c] = useds[c] end
return reply
"""

# The rows of KEYS: {r, pt, ct, c, e} each, 0 for a missing field.
_READ = """
local out = {}
for i, key in ipairs(KEYS) do
  local row = redis.call('HMGET', key, 'r', 'pt', 'ct', 'c', 'e')
  for j = 1, 5 do row[j] = tonumber(row[j] or 0) end
  out[i] = row
end
return out
"""

# Adds ARGV (5 deltas) to each key that still exists: a window that rolled over is not revived.
_ADJUST = """
local f = {'r', 'pt', 'ct', 'c', 'e'}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for j = 1, 5 do
      local d = tonumber(ARGV[j])
      if d ~= 0 then redis.call('HINCRBY', key, f[j], d) end
    end
  end
end
return 0
"""

_FAILURES = (RedisError, OSError, asyncio.TimeoutError)


def redact_url(url: str) -> str:
    """The store URL without its password, for readiness output and errors."""
    return masked(url)


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
        self._reserve_script: Any = None
        self._adjust_script: Any = None
        self._read_script: Any = None
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
        # Script objects run EVALSHA and load the script once, on the first NOSCRIPT.
        self._script = self._client.register_script(_ADD)
        self._reserve_script = self._client.register_script(_RESERVE)
        self._adjust_script = self._client.register_script(_ADJUST)
        self._read_script = self._client.register_script(_READ)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _read(self, bounds: Bounds, subs: list[Subject]) -> list[Sequence[int]]:
        # One script call rather than a pipeline of HMGETs: the same single round trip, at a
        # third of the client CPU (one command to encode and parse instead of one per row).
        if self._read_script is None:
            raise UsageUnavailable("usage store (redis) is not started")
        try:
            replies = await self._read_script(keys=self._row_keys(bounds, subs))
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return [tuple(int(v) for v in r) if any(r) else ZERO for r in replies]

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

    def _row_keys(self, bounds: Bounds, subs: list[Subject]) -> list[str]:
        """Subject-major, WINDOWS order: the row order of ``_read`` and the admission checks."""
        return [self._key(w, bounds[w][0], s) for s in subs for w in WINDOWS]

    async def _reserve(self, bounds: Bounds, subs: list[Subject], checks: list[Check],
                       model: str, prompt: int, out: int, choices: int,
                       now: float) -> tuple[list[tuple[int, int]], int, int, list[int]]:
        if self._reserve_script is None:
            raise UsageUnavailable("usage store (redis) is not started")
        keys = self._row_keys(bounds, subs)
        ttls = [math.ceil(bounds[w][1] - now) + TTL_GRACE_S for w in WINDOWS]
        rates = self.prices.rates(model) or (0.0, 0.0)
        args: list[Any] = [prompt, out, choices, repr(rates[0]), repr(rates[1]), len(checks)]
        for c in checks:
            args += [c.row + 1, c.metric, repr(c.limit), 1 if c.shrink else 0]
        try:
            reply = await self._reserve_script(keys=keys, args=[*args, *ttls])
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        if reply[0] == 0:
            return [], int(reply[1]), int(reply[2]), [int(u) for u in reply[3:]]
        pairs = reply[1:]
        return [(int(pairs[i]), int(pairs[i + 1])) for i in range(0, len(pairs), 2)], out, 0, []

    async def _adjust(self, bounds: Bounds, subs: list[Subject], delta: tuple[int, ...]) -> None:
        if self._adjust_script is None:
            raise UsageUnavailable("usage store (redis) is not started")
        try:
            await self._adjust_script(keys=self._row_keys(bounds, subs), args=list(delta))
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
