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
    # Second evaluation on the model's answer (input.output). For streams the accumulated
    # text is checked every ``output_check_every_chars`` characters and at the end.
    output_decision: bool = True
    # Each check rescans the answer so far: a 4,000-character answer costs ~0.65 ms of
    # scanning at 1,000 (~2.8 ms at 200). Anything shorter than the interval (a short API key)
    # is delivered before a check can fire whatever the interval; mid-stream checks exist to
    # cut long leaks (a PEM key) and stop generation early. docs/performance.md.
    output_check_every_chars: int = Field(1000, ge=1)
