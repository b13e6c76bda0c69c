"""The adapter boundary, typed: what the router may ask of a provider adapter.

    ChatAdapter          required   validate, to_provider, from_provider,
                                    stream_translator, error_from_provider
    EmbeddingsAdapter    optional   embeddings_to_provider, embeddings_from_provider
    PreparingAdapter     optional   prepare(settings) -> state, once per deployment
    InProcessAdapter     optional   respond(UpstreamRequest) -> (status, headers, body):
                                    answers without a network (the mock provider)

Each provider module keeps its pure functions (GUIDE.md 4) and exposes them as one object,
``ADAPTER``, whose class states the capabilities it has; the registry (adapters.registry)
checks the required one when it loads an adapter, and the router asks for an optional one
with ``isinstance`` once, when it builds a deployment, never per request. Streaming is part
of ``ChatAdapter``: every provider the gateway speaks to can stream a chat answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from adapters.types import StreamTranslator, Target, UpstreamRequest, Usage
from pep.errors import GatewayError


@runtime_checkable
class ChatAdapter(Protocol):
    """Chat completions, whole and streamed: what every adapter must do."""

    kind: str

    def validate(self, settings: Any) -> None:
        """Config-time check of a provider entry; raises ValueError with the reason."""

    def to_provider(self, body: dict[str, Any], target: Target) -> UpstreamRequest:
        """Canonical (OpenAI Chat Completions) request -> the provider's request."""

    def from_provider(self, data: bytes, target: Target) -> tuple[dict[str, Any], Usage | None]:
        """The provider's whole answer -> a ``chat.completion`` body and its usage."""

    def stream_translator(self, target: Target) -> StreamTranslator:
        """A new per-request translator: provider stream bytes in, chunk dicts out."""

    def error_from_provider(self, status: int, headers: Mapping[str, str], data: bytes,
                            target: Target) -> GatewayError:
        """A provider error response -> the client-facing error (status kept, text not)."""


@runtime_checkable
class EmbeddingsAdapter(Protocol):
    """The provider has an embeddings API."""

    def embeddings_to_provider(self, body: dict[str, Any], target: Target) -> UpstreamRequest:
        """Canonical embeddings request -> the provider's request."""

    def embeddings_from_provider(self, data: bytes,
                                 target: Target) -> tuple[dict[str, Any], Usage | None]:
        """The provider's answer -> an OpenAI embeddings list and its usage."""


@runtime_checkable
class PreparingAdapter(Protocol):
    """The adapter builds per-deployment state once (e.g. Bedrock's signing credentials)."""

    def prepare(self, settings: Any) -> Any:
        """State for ``Target.state``, built when the router starts."""


@runtime_checkable
class InProcessAdapter(Protocol):
    """The adapter answers in process instead of over HTTP (the mock provider)."""

    def respond(self, req: UpstreamRequest) -> tuple[int, Mapping[str, str], bytes]:
        """Status, headers and body for the request, as a provider would send them."""
