"""Usage counter settings: where counters live, what to do when that store fails, prices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from pep.settings_base import Dsn, Frozen


class ModelPrice(Frozen):
    """USD per million tokens, as providers publish them."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


class UsageSettings(Frozen):
    # "memory" (counters inside this process) or redis://host:6379/0, rediss://..., unix://...
    # so that several replicas share one count.
    store: Dsn = "memory"
    # Kept apart from the URL so that the settings tree can print the store safely.
    redis_password: SecretStr | None = None
    # deny: a request whose counters cannot be read is refused (503). allow: it proceeds with
    # input.usage = {"unavailable": true} and policy decides.
    on_store_error: Literal["deny", "allow"] = "deny"
    key_prefix: str = Field("regogate:usage:", min_length=1, max_length=64)
    # Redis connect/read deadline; the snapshot is on every request's path.
    timeout_s: float = Field(0.25, gt=0, le=10)
    # Output tokens reserved at admission for a request that sets no max_tokens (and gets no
    # cap from policy); under a shrinking token limit it is also the cap forwarded. The
    # reservation is settled to the real usage when the answer is known (docs/usage.md).
    reserve_output_tokens: int = Field(4096, ge=1, le=10_000_000)
    # Prices by configured model name (the name clients use / the reroute target).
    prices: dict[str, ModelPrice] = Field(default_factory=dict)
    # Used for models without an entry; None means such requests carry no cost.
    default_price: ModelPrice | None = None

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value == "memory" or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        raise ValueError("must be 'memory' or a redis://, rediss:// or unix:// URL")
