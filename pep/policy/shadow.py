"""Shadow mode: a candidate bundle evaluated beside the enforced policy, never enforced.

For every decision the pipeline calls ``compare(policy_input, enforced)``; the candidate
(always the embedded engine, on ``policy.shadow.bundle``, hot-reloaded like the main one)
decides the same input. Differences in ``allow``, reason codes or obligations are logged,
counted and returned as a dict the pipeline writes as a ``shadow.divergence`` audit event.
A candidate that errors is a divergence of kind ``error`` (the candidate would have answered
503). ``compare`` never raises: shadow problems must never change the request's outcome.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import orjson

from pep.policy.contract import Decision
from pep.policy.embedded import EmbeddedEngine
from pep.policy.engine import PolicyError
from pep.policy.settings import PolicySettings, ShadowSettings

log = logging.getLogger("regogate.policy.shadow")


def _summary(decision: Decision) -> tuple[bool, list[str], dict[str, Any]]:
    return (
        decision.allow,
        sorted({r.code for r in decision.reasons}),
        decision.obligations.model_dump(exclude_none=True),
    )


class ShadowEvaluator:
    def __init__(
        self, settings: ShadowSettings, *, hot_reload: bool = True, reload_interval_s: float = 1.0
    ) -> None:
        self._candidate = EmbeddedEngine(
            settings.bundle,
            settings.decision,
            hot_reload=hot_reload,
            reload_interval_s=reload_interval_s,
        )
        self.evaluations = 0
        self.divergences = 0
        self.errors = 0

    @property
    def revision(self) -> str:
        return self._candidate.revision

    async def start(self) -> None:
        """A broken candidate bundle at start is fatal, like the enforced one: an operator
        who turned shadow mode on wants to know now, not find an empty audit later."""
        await self._candidate.start()

    async def close(self) -> None:
        await self._candidate.close()

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        ok, detail = await self._candidate.ready()
        detail.update(
            evaluations=self.evaluations, divergences=self.divergences, errors=self.errors
        )
        return ok, detail

    async def compare(
        self, policy_input: dict[str, Any], enforced: Decision
    ) -> dict[str, Any] | None:
        """None when the candidate agrees; otherwise the divergence record (for audit)."""
        self.evaluations += 1
        try:
            candidate = self._candidate.decide(orjson.dumps(policy_input).decode(), policy_input)
        except PolicyError as exc:
            self.errors += 1
            self.divergences += 1
            log.warning("shadow candidate %s failed: %s", self.revision, exc)
            return self._record(enforced, None, ["error"], error=exc.code)
        except Exception:  # never let the shadow touch the request
            self.errors += 1
            log.exception("shadow evaluation crashed")
            return None
        e_allow, e_codes, e_obl = _summary(enforced)
        c_allow, c_codes, c_obl = _summary(candidate)
        differs = [
            name
            for name, a, b in (
                ("allow", e_allow, c_allow),
                ("reasons", e_codes, c_codes),
                ("obligations", e_obl, c_obl),
            )
            if a != b
        ]
        if not differs:
            return None
        self.divergences += 1
        log.info("shadow divergence (%s) for request %s", ",".join(differs), enforced.decision_id)
        return self._record(enforced, candidate, differs)

    def _record(
        self,
        enforced: Decision,
        candidate: Decision | None,
        differs: list[str],
        *,
        error: str | None = None,
    ) -> dict[str, Any]:
        e_allow, e_codes, e_obl = _summary(enforced)
        record: dict[str, Any] = {
            "shadow": {
                "differs": differs,
                "enforced": {
                    "revision": enforced.policy_revision,
                    "allow": e_allow,
                    "reasons": e_codes,
                    "obligations": e_obl,
                },
                "candidate": {"revision": self.revision, "error": error},
            }
        }
        if candidate is not None:
            c_allow, c_codes, c_obl = _summary(candidate)
            record["shadow"]["candidate"].update(allow=c_allow, reasons=c_codes, obligations=c_obl)
        return record


def create_shadow(
    settings: PolicySettings, session: aiohttp.ClientSession | None = None
) -> ShadowEvaluator:
    """The composition root's entry point (``settings.shadow`` must be set)."""
    if settings.shadow is None:
        raise ValueError("policy.shadow is not configured")
    return ShadowEvaluator(
        settings.shadow,
        hot_reload=settings.hot_reload,
        reload_interval_s=settings.reload_interval_s,
    )
