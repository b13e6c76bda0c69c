"""Policy engine settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from pep.settings_base import Frozen


class ShadowSettings(Frozen):
    """A candidate policy evaluated beside the enforced one; never enforced."""

    bundle: Path
    decision: str = "regogate/decision"


class PolicySettings(Frozen):
    engine: Literal["embedded", "opa"] = "embedded"
    # Directory of .rego and data files (data.json / data.yaml). Relative paths resolve
    # against the working directory.
    bundle: Path = Path("policies")
    # Decision path, as in OPA's REST data API: data.regogate.decision.
    decision: str = "regogate/decision"
    opa_url: str = "http://127.0.0.1:8181"
    timeout_s: float = Field(0.5, gt=0)
    hot_reload: bool = True
    # How often the embedded engine polls the bundle's file mtimes for hot reload.
    reload_interval_s: float = Field(1.0, gt=0)
    shadow: ShadowSettings | None = None
    # Second evaluation on the model's answer (input.output). Streams: nothing is sent before
    # it was checked; text is held back until output_check_every_chars characters or
    # output_hold_ms milliseconds (from the oldest held chunk) have accumulated, then the
    # answer so far is checked (incremental scan) and the window released. Larger windows:
    # fewer policy evaluations per stream; smaller: text flows sooner. docs/performance.md.
    output_decision: bool = True
    output_check_every_chars: int = Field(1000, ge=1)
    output_hold_ms: float = Field(50.0, gt=0, le=10_000)
