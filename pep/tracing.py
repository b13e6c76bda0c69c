"""OpenTelemetry traces (opentelemetry-sdk), exported over OTLP/HTTP when configured.

One SERVER span per request, with child spans ``authenticate``, ``policy``, ``audit <event>``
and the CLIENT span of the provider call (``chat <model>``), carrying the GenAI semantic
conventions (``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.provider.name``, ``gen_ai.usage.input_tokens`` / ``output_tokens``). The provider
receives the trace context (W3C ``traceparent``); the audit record stores the trace id.

Metrics, the GenAI client conventions, for every request that reached a provider:
``gen_ai.client.operation.duration`` (s, until the provider's answer or first byte) and
``gen_ai.client.token.usage`` ({token}, ``gen_ai.token.type`` input | output), with
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model`` and ``error.type`` (the status) on failures; exported over
OTLP/HTTP by the SDK's own thread (``tracing.otlp_metrics_endpoint``).

Zero cost when not configured: no provider is built, ``Exchange.span`` stays None and every
helper here returns at its first line. The provider is the app's own (never the global one),
so two apps in one process do not share spans. Prompts and answers are never span attributes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pep.exchange import Exchange
from pep.tracing_settings import TracingSettings

_PROPAGATOR = TraceContextTextMapPropagator()


# The bucket boundaries the GenAI semantic conventions recommend for these two histograms.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)


class GenAIMetrics:
    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter("regogate")
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS))
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))

    def record(self, x: Exchange, status: int) -> None:
        if x.upstream_s is None or x.req is None:
            return  # no provider call (refused, or answered from cache)
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "embeddings" if x.api == "embeddings" else "chat",
            "gen_ai.request.model": x.req.model}
        if x.served is not None:
            attrs["gen_ai.provider.name"] = _kind(x)
            attrs["gen_ai.response.model"] = x.served.model
        if status >= 400:
            attrs["error.type"] = str(status)
        self.duration.record(x.upstream_s, attrs)
        if x.usage is not None:
            self.tokens.record(x.usage.prompt_tokens, {**attrs, "gen_ai.token.type": "input"})
            self.tokens.record(x.usage.completion_tokens,
                               {**attrs, "gen_ai.token.type": "output"})


class Tracing:
    def __init__(self, settings: TracingSettings, exporter: SpanExporter | None = None,
                 metric_reader: MetricReader | None = None) -> None:
        self.settings = settings
        resource = Resource.create({"service.name": settings.service_name})
        self._provider = TracerProvider(
            resource=resource, sampler=ParentBasedTraceIdRatio(settings.sample_ratio))
        self._meters: MeterProvider | None = None
        self.genai: GenAIMetrics | None = None
        endpoint = settings.metrics_endpoint()
        if metric_reader is None and endpoint is not None:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter,
            )

            metric_reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=endpoint),
                export_interval_millis=settings.metrics_export_interval_s * 1000)
        if metric_reader is not None:
            self._meters = MeterProvider(resource=resource, metric_readers=[metric_reader])
            self.genai = GenAIMetrics(self._meters)
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Batched on the SDK's own thread: exporting never waits on the event loop.
            self._provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        else:
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer = self._provider.get_tracer("regogate")

    def start_request(self, x: Exchange, headers: Any, route: str) -> None:
        parent = (_PROPAGATOR.extract(headers) if self.settings.trust_client_traceparent
                  else None)
        span = self.tracer.start_span(f"{x.method} {route}", context=parent,
                                      kind=trace.SpanKind.SERVER)
        span.set_attribute("http.request.method", x.method)
        span.set_attribute("url.path", x.path)
        span.set_attribute("regogate.request_id", x.request_id)
        x.span, x.tracer, x.genai = span, self.tracer, self.genai
        ctx = span.get_span_context()
        if ctx.is_valid:
            x.trace_id = format(ctx.trace_id, "032x")

    async def close(self) -> None:
        await asyncio.to_thread(self._provider.shutdown)  # flushes what is batched
        if self._meters is not None:
            await asyncio.to_thread(self._meters.shutdown)  # exports the last interval


def end_request(x: Exchange, status: int) -> None:
    span = x.span
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if x.principal is not None:
        span.set_attribute("enduser.id", x.principal.sub)
    if x.decision is not None:
        span.set_attribute("regogate.decision", "allow" if x.decision.allow else "deny")
    _genai(span, x)
    if x.genai is not None:
        x.genai.record(x, status)
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()


_OFF = contextlib.nullcontext()


def child(x: Exchange, name: str, *, client: bool = False) -> Any:
    """A child span of the request's span, as a context manager yielding it; with tracing
    off, a shared no-op context yielding None (no generator, no allocation)."""
    parent = x.span
    if parent is None:
        return _OFF
    kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
    return x.tracer.start_as_current_span(name, context=trace.set_span_in_context(parent),
                                          kind=kind, end_on_exit=True)


def upstream_headers(span: Any) -> dict[str, str] | None:
    """The W3C trace context for the provider call (None when tracing is off)."""
    if span is None:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def annotate_upstream(span: Any, x: Exchange, operation: str, provider_kind: str) -> None:
    if span is None:
        return
    span.set_attribute("gen_ai.operation.name", operation)
    span.set_attribute("gen_ai.provider.name", provider_kind)
    if x.req is not None:
        span.set_attribute("gen_ai.request.model", x.req.model)


def _genai(span: Any, x: Exchange) -> None:
    if x.api is None or x.req is None:
        return
    span.set_attribute("gen_ai.operation.name",
                       "embeddings" if x.api == "embeddings" else "chat")
    span.set_attribute("gen_ai.request.model", x.req.model)
    if x.served is not None:
        span.set_attribute("gen_ai.response.model", x.served.model)
        span.set_attribute("gen_ai.provider.name", _kind(x))
    if x.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", x.usage.prompt_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", x.usage.completion_tokens)


def _kind(x: Exchange) -> str:
    served = x.served
    return str(getattr(served, "kind", None) or getattr(served, "provider", ""))
