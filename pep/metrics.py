"""Prometheus metrics (prometheus-client), one registry per app, exposed at /metrics.

Every series is declared in ``CATALOGUE`` below, with its type, help and label names: that
is the list operators alert on (docs/deployment.md). Code records through

    metrics.inc("auth_failures_total", code=err.code)       # counters
    metrics.observe("policy_duration_seconds", 0.0004, engine="embedded")
    metrics.set(name, value, **labels)                         # gauges

An undeclared name or a wrong label set is a bug in the caller: ``strict`` metrics (the test
suite, ``REGOGATE_METRICS_STRICT=1``) raise, so it fails loudly there; a production gateway
logs it once and keeps serving -- a metrics typo must never turn a request into a 500.

Series a component owns (policy reloads, JWKS keys, audit store totals, breaker state) are
read at scrape time through ``add_source``: nothing is mirrored on the request path.
"""

from __future__ import annotations

import logging
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample as PromSample
from prometheus_client.utils import floatToGoString

log = logging.getLogger("regogate.metrics")

PREFIX = "regogate_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Kind = Literal["counter", "gauge", "histogram"]

# Sub-millisecond steps where the gateway's own work lives (policy, audit), seconds where
# providers live (upstream, time to first token, whole requests).
_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

CATALOGUE: dict[str, tuple[Kind, str, tuple[str, ...]]] = {
    # requests
    "requests_total": ("counter", "Requests answered, by API, model, decision and status",
                       ("api", "model", "decision", "status")),
    "client_errors_total": ("counter", "Requests refused as the client's fault (4xx), by code",
                            ("code",)),
    "request_duration_seconds": ("histogram", "Time from request to last byte", ("api",)),
    "internal_errors_total": ("counter", "Unhandled errors (bugs): 500 answers", ()),
    "requests_rejected_total": ("counter", "Requests refused before policy, by code", ("code",)),
    # connection layer (pep/http/edge.py)
    "malformed_requests_total": ("counter", "Requests aiohttp's parser refused, by reason",
                                 ("reason",)),
    "parse_sliced_reads_total": ("counter", "Large reads parsed in slices (one huge read)",
                                 ()),
    "header_timeouts_total": ("counter", "Connections closed: headers not read in time", ()),
    "connections_evicted_total": ("counter", "Idle connections closed to admit new ones", ()),
    "connections_refused_total": ("counter", "Connections refused at max_client_connections",
                                  ()),
    "client_disconnects_total": ("counter", "Clients that went away before the answer ended",
                                 ()),
    # MCP gateway (pep/mcp): server is a configured name, method one MCP knows or "other"
    "mcp_messages_total": ("counter", "MCP messages answered after the upstream, by server, "
                           "method and outcome (ok, tool_error, error)",
                           ("server", "method", "outcome")),
    "mcp_upstream_errors_total": ("counter", "MCP upstream failures (unreachable, timeout, "
                                  "garbage, circuit open), by server and code",
                                  ("server", "code")),
    # identity
    "auth_failures_total": ("counter", "Refused credentials, by error code", ("code",)),
    "jwks_refresh_failures_total": ("counter", "Failed JWKS/discovery refreshes",
                                    ("issuer", "cause")),
    "jwks_keys": ("gauge", "Signing keys currently held per issuer", ("issuer",)),
    "jwks_fetches_total": ("counter", "JWKS documents requested from each issuer", ("issuer",)),
    # policy
    "policy_duration_seconds": ("histogram", "Policy evaluation time", ("engine",)),
    "policy_errors_total": ("counter", "Policy engine failures (503), by cause", ("code",)),
    "policy_denials_total": ("counter", "Requests denied by policy (403)", ()),
    "quota_denials_total": ("counter", "Requests denied by a quota reason (429)", ()),
    "output_denials_total": ("counter", "Answers withheld or cut by the output decision", ()),
    "shadow_divergences_total": ("counter", "Shadow policy decisions differing from enforced",
                                 ()),
    "policy_reloads_total": ("counter", "Successful policy hot reloads", ()),
    "policy_reload_errors_total": ("counter", "Failed policy hot reloads (old policy kept)", ()),
    "policy_engine_failures_total": ("counter",
                                     "Embedded engine failures (panics) that were contained", ()),
    "policy_revision_info": ("gauge", "The policy revision in force", ("engine", "revision")),
    # upstream
    "upstream_duration_seconds": ("histogram",
                                  "Time until the provider answered (first byte for streams)",
                                  ("model",)),
    "time_to_first_token_seconds": ("histogram", "Request start to first streamed token",
                                    ("model",)),
    "upstream_errors_total": ("counter", "Provider failures after retries/fallback, by code",
                              ("code",)),
    "stream_errors_total": ("counter", "Streams ended by an error, by code", ("code",)),
    "stream_limit_rejections_total": ("counter", "Streams refused: max_concurrent_streams", ()),
    "circuit_breaker_open": ("gauge", "1 while a deployment's circuit breaker is open",
                             ("provider", "model")),
    "tokens_total": ("counter", "Tokens used, by model and kind (prompt|completion)",
                     ("model", "kind")),
    "cost_usd_total": ("counter", "Cost in USD by model (usage.prices)", ("model",)),
    # usage / quotas
    "usage_store_failures_total": ("counter", "Usage store reads/writes that failed", ()),
    "conversation_store_failures_total": ("counter", "Responses API state store failures", ()),
    # response cache (pep/cache/)
    "cache_lookups_total": ("counter", "Cache lookups, by result (hit, miss, bypass)",
                            ("result",)),
    "cache_fills_total": ("counter", "Answers stored in the cache", ()),
    "cache_fill_bytes_total": ("counter", "Bytes of answers stored in the cache", ()),
    "cache_fills_skipped_total": ("counter", "Answers not stored, by reason", ("reason",)),
    "cache_evictions_total": ("counter", "Entries evicted from the in-memory cache", ()),
    "cache_store_errors_total": ("counter", "Cache store failures (treated as misses)", ()),
    "cache_embedding_errors_total": ("counter", "Semantic cache embedding failures", ()),
    "cache_memory_bytes": ("gauge", "Bytes held by the in-memory cache", ()),
    "cache_memory_entries": ("gauge", "Entries held by the in-memory cache", ()),
    "cache_semantic_vectors": ("gauge", "Vectors in this process's semantic cache index", ()),
    "cache_purged_total": ("counter", "Cache entries purged through the admin API", ()),
    # audit
    "audit_write_duration_seconds": ("histogram", "Time to make an audit record durable",
                                     ("event",)),
    "audit_write_failures_total": ("counter", "Audit records that could not be written", ()),
    "audit_transactions_total": ("counter", "Audit store commits", ()),
    "audit_records_total": ("counter", "Audit records written", ()),
    "audit_failures_total": ("counter", "Audit store write failures (store's own count)", ()),
    # events (CloudEvents sinks)
    "events_delivered_total": ("counter", "Events delivered to a sink", ("sink",)),
    "events_failed_total": ("counter", "Events not delivered after every retry", ("sink",)),
    "events_dropped_total": ("counter", "Events dropped: the sink's queue was full", ("sink",)),
    # meta
    "metrics_misuse_total": ("counter", "Undeclared metric names or labels used by the code",
                             ()),
}

Sample = tuple[str, dict[str, str], float]
Source = Callable[[], Iterable[Sample]]


class FastHistogram(Histogram):
    """prometheus-client's Histogram with a cheaper ``observe``: one ``bisect`` and two float
    additions instead of a loop over the buckets and a lock per value (a request makes six
    observations). Scrapes render exactly what the library's Histogram renders (buckets,
    count, sum, created; tests/test_metrics_fast.py compares the two). Observations come
    from the event-loop thread only, so no lock is needed; exemplars are not used."""

    def _metric_init(self) -> None:
        self._created = time.time()
        self._bounds = list(self._upper_bounds)
        self._counts = [0.0] * len(self._bounds)
        self._total = 0.0

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        if exemplar is not None:
            raise ValueError("FastHistogram does not record exemplars")
        if amount != amount:  # NaN: no bucket holds it (the library's loop skips it too)
            self._total += amount
            return
        self._counts[bisect_left(self._bounds, amount)] += 1.0
        self._total += amount

    def _child_samples(self) -> Iterable[PromSample]:
        samples = []
        acc = 0.0
        for bound, n in zip(self._upper_bounds, self._counts, strict=True):
            acc += n
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]
            samples.append(PromSample("_bucket", {"le": le}, acc, None, None))
        samples.append(PromSample("_count", {}, acc, None, None))
        if self._upper_bounds[0] >= 0:
            samples.append(PromSample("_sum", {}, self._total, None, None))
        if _created_series():
            samples.append(PromSample("_created", {}, self._created, None, None))
        return tuple(samples)


def _created_series() -> bool:
    from prometheus_client import metrics

    return bool(metrics._use_created)  # noqa: SLF001 -- the library's own switch


class MetricsMisuse(Exception):
    """An undeclared metric name or wrong labels (strict mode only)."""


class _Sources(Collector):
    """Reads component-owned values at scrape time, typed from the catalogue."""

    def __init__(self) -> None:
        self.sources: list[Source] = []

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for source in self.sources:
            for name, labels, value in source():
                kind, doc, names = CATALOGUE[name]
                fam = families.get(name)
                if fam is None:
                    base = PREFIX + name.removesuffix("_total")
                    fam = (CounterMetricFamily(base, doc, labels=names) if kind == "counter"
                           else GaugeMetricFamily(base, doc, labels=names))
                    families[name] = fam
                fam.add_metric([str(labels[n]) for n in names], value)  # type: ignore[attr-defined]
        yield from families.values()


class Metrics:
    def __init__(self, *, strict: bool | None = None) -> None:
        self.strict = (os.environ.get("REGOGATE_METRICS_STRICT") == "1"
                       if strict is None else strict)
        self.registry = CollectorRegistry(auto_describe=True)
        self._sources = _Sources()
        self.registry.register(self._sources)
        self._m: dict[str, Any] = {}
        self._reported: set[str] = set()
        self._children: dict[tuple[Any, ...], Any] = {}
        for name, (kind, doc, labels) in CATALOGUE.items():
            if name in _SOURCE_ONLY:
                continue
            full = PREFIX + name
            if kind == "counter":
                self._m[name] = Counter(full, doc, labels, registry=self.registry)
            elif kind == "gauge":
                self._m[name] = Gauge(full, doc, labels, registry=self.registry)
            else:
                buckets = _SLOW if name in _SLOW_HISTOGRAMS else _FAST
                self._m[name] = FastHistogram(full, doc, labels, buckets=buckets,
                                              registry=self.registry)

    # -- recording ---------------------------------------------------------------------
    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        m = self._series(name, "counter", labels)
        if m is not None:
            m.inc(value)

    def add(self, name: str, delta: float, **labels: str) -> None:
        """Move a gauge up or down (sizes held in memory)."""
        m = self._series(name, "gauge", labels)
        if m is not None:
            m.inc(delta)

    def observe(self, name: str, value: float, **labels: str) -> None:
        m = self._series(name, "histogram", labels)
        if m is not None:
            m.observe(value)

    def set(self, name: str, value: float, **labels: str) -> None:
        m = self._series(name, "gauge", labels)
        if m is not None:
            m.set(value)

    def observe_request(self, *, api: str, model: str, decision: str, status: int,
                        seconds: float) -> None:
        self.inc("requests_total", api=api, model=model, decision=decision, status=str(status))
        self.observe("request_duration_seconds", seconds, api=api)

    def add_source(self, source: Source) -> None:
        self._sources.sources.append(source)

    # -- reading -----------------------------------------------------------------------
    def get(self, name: str, **labels: str) -> float:
        """The current value of a counter or gauge series (0 if never recorded)."""
        full = PREFIX + name
        value = self.registry.get_sample_value(full, labels or None)
        if value is None and not name.endswith("_total"):
            value = self.registry.get_sample_value(full + "_total", labels or None)
        return value or 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ------------------------------------------------------------------------------------
    def _series(self, name: str, kind: Kind, labels: dict[str, str]) -> Any:
        # Hot path: a series already seen is one dict lookup (validated when first made).
        key = (name, kind, *labels.items())
        found = self._children.get(key)
        if found is not None:
            return found
        child = self._make(name, kind, labels)
        if child is not None and len(self._children) < _CHILD_CACHE_MAX:
            self._children[key] = child
        return child

    def _make(self, name: str, kind: Kind, labels: dict[str, str]) -> Any:
        spec = CATALOGUE.get(name)
        if spec is None or spec[0] != kind or name in _SOURCE_ONLY:
            return self._misuse(f"{kind} {name!r} is not declared in pep.metrics.CATALOGUE")
        if set(labels) != set(spec[2]):
            return self._misuse(f"{name}: labels {sorted(labels)} != declared {list(spec[2])}")
        m = self._m[name]
        return m.labels(**{k: str(v) for k, v in labels.items()}) if labels else m

    def _misuse(self, message: str) -> None:
        if self.strict:
            raise MetricsMisuse(message)
        self._m["metrics_misuse_total"].inc()
        if message not in self._reported:
            self._reported.add(message)
            log.error("metrics misuse (fix the code): %s", message)
        return None


# Read from components at scrape time (add_source), never recorded through inc/set.
_SOURCE_ONLY = frozenset({
    "jwks_refresh_failures_total", "jwks_keys", "jwks_fetches_total", "policy_reloads_total",
    "policy_reload_errors_total", "policy_engine_failures_total", "policy_revision_info",
    "circuit_breaker_open",
    "audit_transactions_total", "audit_records_total", "audit_failures_total",
    "cache_semantic_vectors",
})
# Label values are bounded (configured models, codes) but the cache is capped all the same.
_CHILD_CACHE_MAX = 10_000
_SLOW_HISTOGRAMS = frozenset({"request_duration_seconds", "upstream_duration_seconds",
                              "time_to_first_token_seconds"})
