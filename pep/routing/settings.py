"""Providers (where and how to connect) and models (what clients may ask for).

Provider credentials come only from here (the config loader resolves ``${ENV}`` and
``${file:/run/secrets/...}``); nothing in a request can choose a URL or a key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from pep.settings_base import Frozen

ProviderKind = Literal[
    "mock", "openai", "openai_compatible", "azure_openai", "anthropic", "gemini", "bedrock"
]


class ProviderSettings(Frozen):
    kind: ProviderKind
    # Overrides the provider's public endpoint (required for openai_compatible and
    # azure_openai; for bedrock it replaces https://bedrock-runtime.<region>.amazonaws.com).
    base_url: str | None = None
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    # Until the response headers (and, for streams, the first translated chunk) arrive.
    first_byte_timeout_s: float = Field(60.0, gt=0)
    # Longest silence between two reads of a body or stream.
    idle_timeout_s: float = Field(60.0, gt=0)
    # Retries of the same deployment on 429/5xx/connection errors before the first byte,
    # then the router falls back to the model's next deployment.
    max_retries: int = Field(1, ge=0, le=10)
    retry_backoff_s: float = Field(0.25, ge=0)
    # Longest Retry-After we are willing to sleep for before retrying in place; a provider
    # asking for longer is not retried in place (the next deployment is tried instead).
    max_retry_wait_s: float = Field(2.0, ge=0)
    # Connection pool for this provider: at most max_connections requests in flight at once
    # (a stream holds its connection until it ends). A request that finds no free connection
    # within pool_timeout_s gets 503 + Retry-After (code upstream_pool_exhausted), tries the
    # model's next deployment, and never counts as a provider failure (circuit breaker).
    max_connections: int = Field(1024, gt=0)
    pool_timeout_s: float = Field(5.0, gt=0)
    # Circuit breaker: after this many consecutive failures the deployment is skipped for
    # breaker_cooldown_s, then one trial request is let through (half-open).
    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(30.0, gt=0)
    # Static, non-secret extra headers (e.g. OpenAI-Organization). Never from a request.
    headers: dict[str, str] = Field(default_factory=dict)
    # azure_openai
    api_version: str = "2024-10-21"
    # anthropic
    anthropic_version: str = "2023-06-01"
    # anthropic and bedrock need max_tokens; used when the request gives none.
    default_max_tokens: int = Field(4096, gt=0)
    # bedrock: explicit keys, else botocore's default chain (env, profile, instance role).
    region: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None


class Deployment(Frozen):
    provider: str
    model: str
    weight: int = Field(1, ge=0)


class ModelSettings(Frozen):
    """A model name clients use, mapped to one upstream model (or several deployments)."""

    provider: str | None = None
    model: str | None = None
    fallbacks: tuple[Deployment, ...] = ()
    embeddings: bool = False
    description: str | None = None
    # "ordered": try deployments in the listed order. "weighted": pick the first attempt
    # at random by weight (load balancing), then fall back through the rest in order.
    strategy: Literal["ordered", "weighted"] = "ordered"
    weight: int = Field(1, ge=0)  # weight of the primary provider/model pair

    def deployments(self) -> tuple[Deployment, ...]:
        first = (
            (Deployment(provider=self.provider, model=self.model, weight=self.weight),)
            if self.provider and self.model
            else ()
        )
        return first + self.fallbacks
