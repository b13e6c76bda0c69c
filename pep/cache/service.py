"""The cache seam of the model-calling path: ``lookup`` before the provider, ``fill`` after.

    admit (authn, inspection, decision) -> obligations -> lookup -> intent audit
      hit:  cached answer -> output decision -> client        (no provider call)
      miss: provider -> output decision -> client -> fill     (complete answers only)

Nothing here decides whether a request is allowed: a lookup happens only for a request the
policy has just admitted, under the ``cache`` obligation of that decision. A store failure is
a miss (the cache is an optimisation, never a reason to refuse or to serve).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from aiohttp import web

from adapters.types import Completion, Served, Usage
from pep import appkeys
from pep.cache.key import cache_key, not_cacheable, scope_value
from pep.cache.replay import RecordingStream, ReplayStream, assemble
from pep.cache.embedders import Embedder, LocalEmbedder, RouterEmbedder
from pep.cache.semantic import SemanticIndex, Vector, normalised, split_last_user_message
from pep.cache.settings import CacheSettings
from pep.cache.stores import CacheStore, CacheUnavailable, EntryMeta, Purge, open_store
from pep.exchange import Exchange
from pep.policy.contract import CacheObligation

if TYPE_CHECKING:
    from pep.routing.router import Router

log = logging.getLogger("regogate.cache")

CACHED_APIS = frozenset({"chat.completions", "responses", "completions", "messages"})
ENTRY_VERSION = 1


@dataclass(slots=True)
class Ticket:
    """What one request's lookup found, and how to fill the cache once it is answered."""

    state: str | None = None  # x-regogate-cache: hit | miss | bypass (None: cache disabled)
    result: Completion | ReplayStream | None = None
    key: str | None = None
    ttl_s: int = 0
    meta: EntryMeta | None = None
    cache: ResponseCache | None = None
    _snapshot: bytes | None = None
    _recorder: RecordingStream | None = None
    _fills: bool = False
    vector: Vector | None = None  # semantic mode: the last user message's embedding
    partition: str | None = None
    _extra: dict[str, Any] = field(default_factory=dict)

    def watch(self, result: Any) -> Any:
        """Called with the provider's answer before it is checked and sent."""
        if not self._fills or self.cache is None:
            return result
        if isinstance(result, Completion):
            self._snapshot = orjson.dumps(result.body)  # before the output check edits it
            return result
        self._recorder = RecordingStream(result, self.cache.settings.max_entry_bytes)
        return self._recorder

    async def fill(self, x: Exchange) -> None:
        """Called after the answer went out whole: only complete, allowed answers are kept."""
        if not self._fills or self.cache is None or self.key is None or self.meta is None:
            return
        if self._snapshot is not None:
            body: Any = orjson.loads(self._snapshot)
            usage = x.usage
        elif self._recorder is not None:
            rec = self._recorder
            if not rec.complete or rec.too_big or x.status != 200:
                return
            body = assemble(rec.chunks)
            usage = rec.usage
        else:
            return
        if body is None or usage is None or x.served is None:
            return
        try:
            await self.cache.store_entry(self, x, body, usage)
        except Exception:  # noqa: BLE001 - the answer is already out; a fill never fails it
            log.exception("cache fill failed for %s", x.request_id)


NO_CACHE = Ticket()


class ResponseCache:
    def __init__(self, settings: CacheSettings, data_dir: Path, metrics: Any,
                 deployments: dict[str, tuple[str, ...]],
                 router: Callable[[], Router] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.store: CacheStore = open_store(settings, data_dir, metrics)
        self._deployments = deployments
        self._router = router  # () -> Router, for semantic mode's embeddings
        self.embedder: Embedder | None = None
        self.semantic: SemanticIndex | None = None
        self._log_after = "0-0"  # the shared vector log: the last record applied
        self._follow_lock = asyncio.Lock()

    async def start(self) -> None:
        await self.store.start()
        s = self.settings
        if s.semantic_embedder == "local":
            self.embedder = LocalEmbedder(s.semantic_local_threads)
        elif s.semantic_embeddings_model is not None and self._router is not None:
            self.embedder = RouterEmbedder(self._router(), s.semantic_embeddings_model)
        if self.embedder is None:
            return
        await self.embedder.start()
        self.semantic = index = SemanticIndex(max_per_partition=s.semantic_max_per_partition,
                                              max_partitions=s.semantic_max_partitions)
        if hasattr(self.metrics, "add_source"):
            self.metrics.add_source(lambda: [("cache_semantic_vectors", {}, len(index))])
        try:
            await self._follow()  # what the other replicas filled before this one started
        except CacheUnavailable as exc:
            log.warning("cache: the shared vector log could not be read at start: %s", exc)

    async def close(self) -> None:
        if self.embedder is not None:
            await self.embedder.close()
        await self.store.close()

    async def _follow(self) -> None:
        """Replay the shared vector log (Redis store) into this replica's index."""
        read = getattr(self.store, "read_vector_log", None)
        if read is None or self.semantic is None:
            return
        async with self._follow_lock:
            while True:
                rows = await read(self._log_after)
                for record_id, fields in rows:
                    self._apply(fields)
                    self._log_after = record_id
                if len(rows) < 1000:
                    return

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        assert self.semantic is not None
        op = fields.get(b"op")
        if op == b"purge":
            what = Purge(user=fields.get(b"user", b"").decode() or None,
                         team=fields.get(b"team", b"").decode() or None,
                         model=fields.get(b"model", b"").decode() or None,
                         everything=fields.get(b"all") == b"1")
            self.semantic.purge(what)
            return
        if op != b"add":
            return
        try:
            expires_at = float(fields[b"expires_at"])
            vector = normalised(np.frombuffer(fields[b"vector"], dtype=np.float32))
            sub, issuer, team, model, scope = orjson.loads(fields[b"meta"])
            partition, key = fields[b"partition"].decode(), fields[b"key"].decode()
        except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
            log.warning("cache: skipped a malformed record of the shared vector log")
            return
        if vector is not None and expires_at > time.time():
            self.semantic.add(partition, vector, key, expires_at,
                              EntryMeta(sub, issuer, team, model, scope))

    async def purge(self, what: Purge) -> int:
        """Purge the store and this process's semantic index (admin API, offboarding)."""
        purged = await self.store.purge(what)
        if self.semantic is not None:
            self.semantic.purge(what)
        return purged

    def _bypass(self, x: Exchange, reason: str, ob: CacheObligation | None) -> Ticket:
        self.metrics.inc("cache_lookups_total", result="bypass")
        x.cache_header = "bypass"
        if ob is not None:
            x.cache = {"hit": False, "bypass": reason}
        return Ticket(state="bypass")

    async def lookup(self, x: Exchange, api: str) -> Ticket:
        decision, principal, req, body = x.decision, x.principal, x.req, x.forwarded
        assert decision is not None and principal is not None and req is not None
        ob = decision.obligations.cache
        if ob is None or ob.mode == "off":
            return self._bypass(x, "policy", ob)
        if api not in CACHED_APIS or body is None:
            return self._bypass(x, "api", ob)
        if not decision.policy_revision:
            return self._bypass(x, "no_policy_revision", ob)
        reason = not_cacheable(body, ob)
        if reason is not None:
            return self._bypass(x, reason, ob)
        scope = scope_value(ob.scope, principal)
        if scope is None:
            return self._bypass(x, f"no_{ob.scope}", ob)
        directives = req.cache_control if ob.client_control else []
        if "no-store" in directives:
            return self._bypass(x, "no-store", ob)
        model = x.model_served or req.model
        key = cache_key(api=api, model=model, deployments=self._deployments.get(model, ()),
                        body=body, scope_value=scope, revision=decision.policy_revision)
        ticket = Ticket(key=key, ttl_s=min(ob.ttl_s, self.settings.max_ttl_s), cache=self,
                        _fills=True,
                        meta=EntryMeta(sub=principal.sub, issuer=principal.issuer,
                                       team=principal.team, model=model, scope=ob.scope))
        if "no-cache" in directives:
            ticket.state = x.cache_header = "bypass"
            x.cache = {"hit": False, "bypass": "no-cache", "key_digest": key}
            self.metrics.inc("cache_lookups_total", result="bypass")
            return ticket
        hit = await self._get(key, x, bool(body.get("stream")), body)
        if hit is None and ob.mode == "semantic" and self.semantic is not None:
            hit = await self._semantic(ticket, ob, x, api, model, body, scope,
                                       decision.policy_revision)
        if hit is not None:
            ticket.result, ticket._fills = hit, False
            ticket.state = x.cache_header = "hit"
            self.metrics.inc("cache_lookups_total", result="hit")
            return ticket
        ticket.state = x.cache_header = "miss"
        x.cache = {"hit": False, "key_digest": key}
        self.metrics.inc("cache_lookups_total", result="miss")
        return ticket

    async def _semantic(self, ticket: Ticket, ob: CacheObligation, x: Exchange, api: str,
                        model: str, body: dict[str, Any], scope: str, revision: str
                        ) -> Completion | ReplayStream | None:
        """Exact miss in semantic mode: the nearest paraphrase in the same partition."""
        assert self.semantic is not None and self.embedder is not None
        split = split_last_user_message(body)
        if split is None:
            return None
        text, rest = split
        vector = await self.embedder.embed(text, x.request_id)
        if vector is None:
            self.metrics.inc("cache_embedding_errors_total")
            return None
        ticket.vector = vector
        ticket.partition = cache_key(api=api, model=model,
                                     deployments=self._deployments.get(model, ()), body=rest,
                                     scope_value=scope, revision=revision)
        threshold = (ob.min_similarity if ob.min_similarity is not None
                     else self.settings.semantic_min_similarity)
        try:
            await self._follow()
        except CacheUnavailable as exc:
            self.metrics.inc("cache_store_errors_total")
            log.warning("cache: shared vector log unavailable for %s (a miss): %s",
                        x.request_id, exc)
            return None
        found = self.semantic.best(ticket.partition, vector, threshold, time.time())
        if found is None:
            return None
        return await self._get(found[0], x, bool(body.get("stream")), body, similarity=found[1])

    async def _get(self, key: str, x: Exchange, stream: bool, body: dict[str, Any],
                   similarity: float = 1.0) -> Completion | ReplayStream | None:
        try:
            blob = await self.store.get(key)
        except CacheUnavailable as exc:
            self.metrics.inc("cache_store_errors_total")
            log.warning("cache lookup failed for %s (served as a miss): %s", x.request_id, exc)
            return None
        if blob is None:
            return None
        entry = orjson.loads(blob)
        if entry.get("v") != ENTRY_VERSION:
            return None
        prompt, completion, estimated = entry["usage"]
        usage = Usage(prompt, completion, estimated=bool(estimated))
        provider, kind, upstream = entry["served"]
        served = Served(provider=provider, kind=kind, model=upstream)
        answer: dict[str, Any] = entry["body"]
        answer["id"] = f"chatcmpl-{x.request_id}"
        answer["created"] = int(time.time())
        x.cache = {"hit": True, "key_digest": key, "age_s": round(time.time() - entry["created"], 3),
                   "similarity": similarity, "filled_by": entry["filled_by"]}
        if stream:
            opts = body.get("stream_options")
            include = isinstance(opts, dict) and bool(opts.get("include_usage"))
            return ReplayStream(answer, usage, served, include_usage=include,
                                request_id=x.request_id)
        answer["usage"] = usage.to_openai()
        return Completion(body=answer, usage=usage, served=served)

    async def store_entry(self, ticket: Ticket, x: Exchange, body: dict[str, Any],
                          usage: Usage) -> None:
        served = x.served
        assert served is not None and ticket.key is not None and ticket.meta is not None
        body.pop("usage", None)
        blob = orjson.dumps({
            "v": ENTRY_VERSION, "body": body, "filled_by": x.request_id, "created": time.time(),
            "usage": [usage.prompt_tokens, usage.completion_tokens, usage.estimated],
            "served": [served.provider, served.kind, served.model],
        })
        if len(blob) > self.settings.max_entry_bytes:
            self.metrics.inc("cache_fills_skipped_total", reason="too_big")
            return
        try:
            await self.store.put(ticket.key, blob, ticket.ttl_s, ticket.meta)
        except CacheUnavailable as exc:
            self.metrics.inc("cache_store_errors_total")
            log.warning("cache fill failed for %s: %s", x.request_id, exc)
            return
        if self.semantic is not None and ticket.vector is not None and ticket.partition:
            expires_at = time.time() + ticket.ttl_s
            self.semantic.add(ticket.partition, ticket.vector, ticket.key, expires_at,
                              ticket.meta)
            share = getattr(self.store, "log_vector", None)
            if share is not None:
                try:
                    await share(ticket.partition, ticket.key, ticket.vector.tobytes(),
                                expires_at, ticket.meta)
                except CacheUnavailable as exc:
                    self.metrics.inc("cache_store_errors_total")
                    log.warning("cache: vector of %s not shared: %s", x.request_id, exc)
        self.metrics.inc("cache_fills_total")
        self.metrics.inc("cache_fill_bytes_total", len(blob))


def cache_directives(header: str | None) -> list[str]:
    """Directive names of a Cache-Control header, lower-cased (what input.request sees)."""
    if not header:
        return []
    return [d.strip().split("=", 1)[0].lower() for d in header.split(",") if d.strip()][:16]


async def lookup(request: web.Request, x: Exchange, api: str) -> Ticket:
    cache: ResponseCache | None = request.app.get(appkeys.CACHE)
    if cache is None:
        return NO_CACHE
    return await cache.lookup(x, api)


async def cache_header(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: tell a client whether its (successful) answer came from cache."""
    from pep.steps import EXCHANGE  # noqa: PLC0415 - pep.steps imports the pipeline's deps

    x = request.get(EXCHANGE)
    if x is not None and x.cache_header is not None and response.status < 300:
        response.headers["x-regogate-cache"] = x.cache_header
