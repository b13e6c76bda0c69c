"""Build the configured policy engine (the one function the composition root calls)."""

from __future__ import annotations

import aiohttp

from pep.policy.embedded import EmbeddedEngine
from pep.policy.engine import PolicyEngine
from pep.policy.settings import PolicySettings


def create_engine(
    settings: PolicySettings, session: aiohttp.ClientSession | None = None
) -> PolicyEngine:
    """Embedded (regorus) or OPA sidecar. Call ``await engine.start()`` before use.

    ``session`` is accepted for interface stability; the OPA engine keeps its own pooled
    keep-alive aiohttp session sized for the sidecar.
    """
    if settings.engine == "opa":
        from pep.policy.opa import OpaEngine

        return OpaEngine(settings.opa_url, settings.decision, timeout_s=settings.timeout_s)
    return EmbeddedEngine(
        settings.bundle,
        settings.decision,
        hot_reload=settings.hot_reload,
        reload_interval_s=settings.reload_interval_s,
    )
