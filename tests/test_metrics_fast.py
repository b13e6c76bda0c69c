"""pep.metrics.FastHistogram renders exactly what prometheus-client's Histogram renders.

The reference is the library's own Histogram fed the same observations in a second registry;
the only difference allowed is the ``_created`` timestamp (each object's own creation time).
"""

from __future__ import annotations

import math
import re

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pep.metrics import _FAST, _SLOW, FastHistogram, Metrics

VALUES = [0.0, 0.00005, 0.0001, 0.00010000001, 0.0005, 0.0025, 0.3, 1.0, 1.5, 60.0, 1e9,
          math.inf, -0.5, math.nan, 0.001, 0.001]


def _render(cls: type[Histogram], buckets: tuple[float, ...]) -> str:
    registry = CollectorRegistry(auto_describe=True)
    h = cls("regogate_x_seconds", "doc", ("model",), buckets=buckets, registry=registry)
    for i, v in enumerate(VALUES):
        h.labels(model="a" if i % 3 else "b").observe(v)
    h.labels(model="never")  # a child with no observation yet
    text = generate_latest(registry).decode()
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", text)


def test_same_exposition_as_the_library_histogram() -> None:
    for buckets in (_FAST, _SLOW):
        fast, ref = _render(FastHistogram, buckets), _render(Histogram, buckets)
        assert fast == ref
        assert 'regogate_x_seconds_bucket{le="+Inf",model="a"}' in fast
        assert "_created{" in fast


def test_metrics_histograms_are_fast_and_readable() -> None:
    m = Metrics(strict=True)
    m.observe("policy_duration_seconds", 0.0004, engine="embedded")
    m.observe("policy_duration_seconds", 0.02, engine="embedded")
    m.observe_request(api="chat.completions", model="m", decision="allow", status=200,
                      seconds=0.03)
    assert isinstance(m._m["policy_duration_seconds"], FastHistogram)
    reg = m.registry
    labels = {"engine": "embedded"}
    assert reg.get_sample_value("regogate_policy_duration_seconds_count", labels) == 2.0
    assert reg.get_sample_value("regogate_policy_duration_seconds_sum", labels) == 0.0204
    assert reg.get_sample_value("regogate_policy_duration_seconds_bucket",
                                {**labels, "le": "0.0005"}) == 1.0
    assert reg.get_sample_value("regogate_policy_duration_seconds_bucket",
                                {**labels, "le": "0.025"}) == 2.0
    assert m.get("requests_total", api="chat.completions", model="m", decision="allow",
                 status="200") == 1.0
    assert b'regogate_request_duration_seconds_bucket{api="chat.completions",le="0.05"} 1.0' \
        in m.render()
