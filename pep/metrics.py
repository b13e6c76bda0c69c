"""In-process counters, exposed in Prometheus text format at /metrics."""

from __future__ import annotations

from collections import defaultdict


class Metrics:
    def __init__(self) -> None:
        self._counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        self._counters[(name, tuple(sorted(labels.items())))] += value

    def get(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        lines = []
        for (name, labels), value in sorted(self._counters.items()):
            label_txt = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"regogate_{name}{{{label_txt}}} {value:g}" if label_txt
                         else f"regogate_{name} {value:g}")
        return "\n".join(lines) + "\n"


def sample(name: str, labels: dict[str, str], value: float) -> str:
    """One Prometheus text line for a counter a component owns (read at scrape time)."""
    label_txt = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"regogate_{name}{{{label_txt}}} {value:g}" if label_txt else f"regogate_{name} {value:g}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
