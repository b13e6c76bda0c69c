"""Tracing settings (kept apart from pep.tracing: loading a config never imports the SDK)."""

from __future__ import annotations

from pydantic import Field

from pep.settings_base import Frozen


class TracingSettings(Frozen):
    # e.g. http://otel-collector:4318/v1/traces; None: tracing off (zero cost).
    otlp_endpoint: str | None = None
    service_name: str = "regogate"
    sample_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Continue a client's trace (its traceparent header) instead of starting a new one.
    trust_client_traceparent: bool = True
