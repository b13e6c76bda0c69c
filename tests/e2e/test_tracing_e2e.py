"""OpenTelemetry traces of real openai SDK calls: a SERVER span per request with children for
authentication, policy, the provider call (GenAI semantic conventions) and audit; the
provider receives the trace context; the audit record carries the trace id; exported over
OTLP/HTTP to a local receiver that decodes the protobuf. Nothing at all when not configured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pep import appkeys
from pep.tracing import Tracing
from pep.tracing_settings import TracingSettings
from tests.fakes.openai_wire import reply
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import running_gateway

HELLO = [{"role": "user", "content": "Hello"}]


def _provider(fake: FakeServer) -> dict[str, Any]:
    return {"providers": {"up": {"kind": "openai", "base_url": fake.url + "/v1",
                                 "api_key": "sk-test-not-a-real-key"}},
            "models": {"mock-gpt": {"provider": "up", "model": "gpt-upstream"}}}


def _answer(_: Recorded) -> Reply:
    return reply("hi", usage=(7, 3))


async def test_a_request_is_one_trace_with_genai_child_spans_and_the_provider_joins_it(
    tmp_path: Path,
) -> None:
    memory = InMemorySpanExporter()
    overrides = {appkeys.TRACING: lambda: Tracing(TracingSettings(), exporter=memory)}
    async with FakeServer(_answer) as fake, running_gateway(
            tmp_path, config=_provider(fake), overrides=overrides) as gw:
        done = await gw.openai("alice").chat.completions.create(model="mock-gpt",
                                                                messages=HELLO)
        records = await gw.audit_records()
    spans: dict[str, Any] = {s.name: s for s in memory.get_finished_spans()}
    root = spans["POST /v1/chat/completions"]
    trace_id = format(root.context.trace_id, "032x")
    assert {"authenticate", "policy", "chat mock-gpt", "audit request.intent",
            "audit request.completion"} <= spans.keys()
    for name in ("authenticate", "policy", "chat mock-gpt", "audit request.intent"):
        assert spans[name].parent is not None and spans[name].parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id
    upstream = spans["chat mock-gpt"]
    assert upstream.kind.name == "CLIENT"
    assert upstream.attributes["gen_ai.operation.name"] == "chat"
    assert upstream.attributes["gen_ai.request.model"] == "mock-gpt"
    assert upstream.attributes["gen_ai.response.model"] == "gpt-upstream"
    assert upstream.attributes["gen_ai.provider.name"] == "openai"
    assert root.attributes["gen_ai.usage.input_tokens"] == 7
    assert root.attributes["gen_ai.usage.output_tokens"] == 3
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["regogate.request_id"] == done._request_id
    # The provider received our trace context, parented on the upstream span.
    traceparent = fake.requests[0].headers["traceparent"]
    version, tid, parent, flags = traceparent.split("-")
    assert (version, tid, parent) == ("00", trace_id, format(upstream.context.span_id, "016x"))
    assert int(flags, 16) & 1  # sampled
    mine = [r for r in records if r["request_id"] == done._request_id]
    assert mine and all(r["trace_id"] == trace_id for r in mine)


async def test_spans_are_exported_over_otlp_http_to_a_collector(tmp_path: Path) -> None:
    async with FakeServer(lambda _: Reply(200, b"")) as collector, \
            FakeServer(_answer) as fake:
        config = {**_provider(fake),
                  "tracing": {"otlp_endpoint": collector.url + "/v1/traces",
                              "service_name": "regogate-test"}}
        async with running_gateway(tmp_path, config=config) as gw:
            await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        # Closing the gateway flushes the batch.
    exported = [r for r in collector.requests if r.path == "/v1/traces"]
    assert exported and exported[0].headers["content-type"] == "application/x-protobuf"
    spans: dict[str, Any] = {}
    service = set()
    for r in exported:
        req = ExportTraceServiceRequest.FromString(r.body)
        for rs in req.resource_spans:
            service |= {a.value.string_value for a in rs.resource.attributes
                        if a.key == "service.name"}
            for ss in rs.scope_spans:
                spans.update({s.name: s for s in ss.spans})
    assert service == {"regogate-test"}
    upstream = spans["chat mock-gpt"]
    attrs = {a.key: a.value for a in upstream.attributes}
    assert attrs["gen_ai.request.model"].string_value == "mock-gpt"
    assert attrs["gen_ai.provider.name"].string_value == "openai"
    assert upstream.trace_id == spans["POST /v1/chat/completions"].trace_id


async def test_without_tracing_configured_nothing_is_traced(tmp_path: Path) -> None:
    async with FakeServer(_answer) as fake, running_gateway(tmp_path,
                                                           config=_provider(fake)) as gw:
        await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        records = await gw.audit_records()
        assert gw.app.get(appkeys.TRACING) is None
    assert "traceparent" not in fake.requests[0].headers
    assert records and not any("trace_id" in r for r in records)


async def test_genai_client_metrics_count_tokens_and_time_per_provider_call_only(
    tmp_path: Path,
) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    overrides = {appkeys.TRACING: lambda: Tracing(
        TracingSettings(), exporter=InMemorySpanExporter(), metric_reader=reader)}
    async with FakeServer(_answer) as fake, running_gateway(
            tmp_path, config=_provider(fake), overrides=overrides) as gw:
        client = gw.openai("alice")
        await client.chat.completions.create(model="mock-gpt", messages=HELLO)
        # the same again: a hit of the default per-user cache, no provider call
        again = await client.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=HELLO)
        data = reader.get_metrics_data()
    assert again.headers["x-regogate-cache"] == "hit" and len(fake.requests) == 1
    assert data is not None
    metrics: dict[str, Any] = {m.name: m for rm in data.resource_metrics
                               for sm in rm.scope_metrics for m in sm.metrics}
    duration = metrics["gen_ai.client.operation.duration"]
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert point.count == 1 and point.sum > 0
    assert dict(point.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "mock-gpt",
        "gen_ai.provider.name": "openai", "gen_ai.response.model": "gpt-upstream"}
    assert tuple(point.explicit_bounds)[:3] == (0.01, 0.02, 0.04)
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert (by_type["input"].count, by_type["input"].sum) == (1, 7)
    assert (by_type["output"].count, by_type["output"].sum) == (1, 3)


async def test_genai_metrics_are_exported_over_otlp_http_beside_the_spans(
    tmp_path: Path,
) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    async with FakeServer(lambda _: Reply(200, b"")) as collector, \
            FakeServer(_answer) as fake:
        config = {**_provider(fake), "tracing": {"otlp_endpoint": collector.url + "/v1/traces"}}
        async with running_gateway(tmp_path, config=config) as gw:
            await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        # Closing the gateway exports the last interval.
    exported = [r for r in collector.requests if r.path == "/v1/metrics"]
    assert exported and exported[0].headers["content-type"] == "application/x-protobuf"
    names = {m.name for r in exported
             for rm in ExportMetricsServiceRequest.FromString(r.body).resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= names


def test_the_metrics_endpoint_follows_the_traces_endpoint_unless_set() -> None:
    assert TracingSettings(otlp_endpoint="http://c:4318/v1/traces").metrics_endpoint() == \
        "http://c:4318/v1/metrics"
    assert TracingSettings(otlp_endpoint="http://c:4318/v1/traces",
                           otlp_metrics_endpoint="off").metrics_endpoint() is None
    assert TracingSettings(otlp_endpoint="http://c/t").metrics_endpoint() is None
    assert TracingSettings(otlp_metrics_endpoint="http://m/v1/metrics").metrics_endpoint() == \
        "http://m/v1/metrics"


@pytest.mark.parametrize("ratio", [1.5, -0.1])
def test_a_sample_ratio_outside_0_to_1_is_refused(ratio: float) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TracingSettings(sample_ratio=ratio)
