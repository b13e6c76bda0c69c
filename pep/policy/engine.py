"""The policy engine interface shared by the embedded (regorus) and OPA-sidecar engines.

``evaluate`` takes the PolicyInput as a plain dict (already validated and dumped once by the
pipeline) and returns a validated ``Decision``. Anything but a well-formed decision -- engine
error, timeout, undefined, ill-typed, unknown obligation -- raises ``PolicyError``, which the
pipeline turns into 503 policy_unavailable (fail closed).
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import ValidationError

from pep.policy.contract import Decision


class PolicyError(Exception):
    """The engine could not produce a well-formed decision. ``code`` is machine-readable:
    policy_unavailable | policy_timeout | policy_undefined | policy_invalid | unknown_obligation."""

    def __init__(self, message: str, code: str = "policy_unavailable") -> None:
        super().__init__(message)
        self.code = code


class PolicyEngine(Protocol):
    name: str  # "embedded" | "opa"

    @property
    def revision(self) -> str: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision: ...

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """(ok, detail) for /readyz: detail may carry revision, last reload error, ..."""
        ...


def parse_decision(
    raw: Any,
    *,
    revision: str | None,
    decision_id: str | None,
    engine_decision_id: str | None = None,
) -> Decision:
    """Validate a raw decision document; the single place that defines 'well-formed'."""
    if raw is None:
        raise PolicyError("policy decision is undefined", "policy_undefined")
    if not isinstance(raw, dict):
        raise PolicyError(
            f"policy decision must be an object, got {type(raw).__name__}", "policy_invalid"
        )
    obligations = raw.get("obligations")
    if isinstance(obligations, dict):
        from pep.policy.contract import Obligations

        unknown = set(obligations) - set(Obligations.model_fields)
        if unknown:
            raise PolicyError(
                f"policy returned obligations the PEP does not enforce: {sorted(unknown)}",
                "unknown_obligation",
            )
        # Rego has one number type: arithmetic can yield 2048.0 where 2048 is meant.
        cap = obligations.get("max_tokens")
        if isinstance(cap, float) and cap.is_integer():
            raw = {**raw, "obligations": {**obligations, "max_tokens": int(cap)}}
    try:
        # Strict: "yes" is not true and "5" is not 5 -- an ill-typed decision is an error.
        decision = Decision.model_validate(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise PolicyError(
            f"ill-typed policy decision at {loc}: {first['msg']}", "policy_invalid"
        ) from exc
    return decision.model_copy(
        update={
            "policy_revision": decision.policy_revision or revision,
            "decision_id": decision_id or decision.decision_id,
            # Only the engine sets it: a policy cannot name a decision log entry.
            "engine_decision_id": engine_decision_id,
        }
    )
