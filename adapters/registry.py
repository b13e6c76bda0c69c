"""The hand-written adapter registry: provider kind -> adapter module.

An adapter module provides pure functions (GUIDE.md 4):

    validate(settings) -> None                         config-time check, raises ValueError
    to_provider(body, target) -> UpstreamRequest       canonical request -> provider request
    from_provider(data, target) -> (chat.completion dict, Usage | None)
    StreamTranslator(target)                           per request: bytes in, chunk dicts out
    error_from_provider(status, headers, data, target) -> GatewayError
    embeddings_to_provider / embeddings_from_provider  (None when the provider has none)
    prepare(settings) -> state                         optional, once per deployment
    respond(UpstreamRequest) -> (status, headers, bytes)   optional in-process transport

Modules are imported on first use so a gateway that never talks to Bedrock never imports
botocore.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any, Protocol

from adapters.types import StreamTranslator, Target, UpstreamRequest, Usage
from pep.errors import GatewayError

_MODULES: Mapping[str, str] = {
    "mock": "adapters.mock",
    "openai": "adapters.openai",
    "openai_compatible": "adapters.openai_compatible",
    "azure_openai": "adapters.azure_openai",
    "anthropic": "adapters.anthropic",
    "gemini": "adapters.gemini",
    "bedrock": "adapters.bedrock",
}


class Adapter(Protocol):
    def validate(self, settings: Any) -> None: ...

    def to_provider(self, body: dict[str, Any], target: Target) -> UpstreamRequest: ...

    def from_provider(
        self, data: bytes, target: Target
    ) -> tuple[dict[str, Any], Usage | None]: ...

    def StreamTranslator(self, target: Target) -> StreamTranslator: ...  # noqa: N802

    def error_from_provider(
        self, status: int, headers: Mapping[str, str], data: bytes, target: Target
    ) -> GatewayError: ...


def kinds() -> list[str]:
    return list(_MODULES)


def get(kind: str) -> ModuleType:
    try:
        name = _MODULES[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}; one of {', '.join(_MODULES)}") from None
    return importlib.import_module(name)
