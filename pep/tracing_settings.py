"""Tracing settings (kept apart from pep.tracing: loading a config never imports the SDK)."""

from __future__ import annotations

from pydantic import Field

from pep.settings_base import Frozen


class TracingSettings(Frozen):
    # e.g. http://otel-collector:4318/v1/traces; None: tracing off (zero cost).
    otlp_endpoint: str | None = None
    # The GenAI client metrics (gen_ai.client.token.usage, gen_ai.client.operation.duration)
    # over OTLP/HTTP. None: the traces endpoint with /v1/traces -> /v1/metrics; "off": none.
    otlp_metrics_endpoint: str | None = None
    metrics_export_interval_s: float = Field(60.0, gt=0)

    def metrics_endpoint(self) -> str | None:
        if self.otlp_metrics_endpoint == "off":
            return None
        if self.otlp_metrics_endpoint is not None:
            return self.otlp_metrics_endpoint
        base = self.otlp_endpoint
        if base is None or not base.rstrip("/").endswith("/v1/traces"):
            return None
        return base.rstrip("/").removesuffix("/v1/traces") + "/v1/metrics"
    service_name: str = "regogate"
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Continue a client's trace (its traceparent header) instead of starting a new one.
    trust_client_traceparent: bool = True
