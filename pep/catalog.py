"""The models clients may name, from configuration (never from a request)."""

from __future__ import annotations

from pep.errors import BadRequest, NotFound
from pep.routing.settings import ModelSettings, ProviderSettings


class Catalog:
    def __init__(
        self, models: dict[str, ModelSettings], providers: dict[str, ProviderSettings]
    ) -> None:
        self._models = dict(models)
        self._kinds = {
            name: providers[m.deployments()[0].provider].kind
            for name, m in models.items()
            if m.deployments()
        }
        self.names: tuple[str, ...] = tuple(sorted(models))
        self.names_set: frozenset[str] = frozenset(models)

    def check(self, model: str, *, embeddings: bool) -> ModelSettings:
        m = self._models.get(model)
        if m is None:
            raise NotFound(f"The model '{model}' does not exist", code="model_not_found",
                           param="model")
        if m.embeddings != embeddings:
            kind = "an embeddings" if m.embeddings else "a chat"
            raise BadRequest(f"'{model}' is {kind} model", param="model", code="wrong_model_type")
        return m

    def provider_kind(self, model: str) -> str | None:
        return self._kinds.get(model)

    def get(self, model: str) -> ModelSettings | None:
        return self._models.get(model)
