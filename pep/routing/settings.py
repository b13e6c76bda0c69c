"""Providers (where and how to connect) and models (what clients may ask for)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from pep.settings_base import Frozen


class ProviderSettings(Frozen):
    kind: str  # mock | openai | openai_compatible | azure_openai | anthropic | gemini | bedrock
    base_url: str | None = None
    api_key: SecretStr | None = None
    connect_timeout_s: float = Field(5.0, gt=0)
    first_byte_timeout_s: float = Field(60.0, gt=0)
    idle_timeout_s: float = Field(60.0, gt=0)


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

    def deployments(self) -> tuple[Deployment, ...]:
        first = (
            (Deployment(provider=self.provider, model=self.model),)
            if self.provider and self.model
            else ()
        )
        return first + self.fallbacks
