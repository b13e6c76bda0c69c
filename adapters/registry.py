"""The hand-written adapter registry: provider kind -> the adapter object of its module.

Each module keeps pure functions (GUIDE.md 4) and exposes them as ``ADAPTER``, an object
implementing ``adapters.base.ChatAdapter`` and whichever optional capability Protocols it
has (embeddings, per-deployment state, in-process transport). Modules are imported on
first use so a gateway that never talks to Bedrock never imports botocore.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from adapters.base import ChatAdapter

_MODULES: Mapping[str, str] = {
    "mock": "adapters.mock",
    "openai": "adapters.openai",
    "openai_compatible": "adapters.openai_compatible",
    "azure_openai": "adapters.azure_openai",
    "anthropic": "adapters.anthropic",
    "gemini": "adapters.gemini",
    "bedrock": "adapters.bedrock",
}


def kinds() -> list[str]:
    return list(_MODULES)


def get(kind: str) -> ChatAdapter:
    try:
        name = _MODULES[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}; one of {', '.join(_MODULES)}") from None
    adapter = getattr(importlib.import_module(name), "ADAPTER", None)
    if not isinstance(adapter, ChatAdapter) or adapter.kind != kind:
        # A registration mistake (a module without its adapter object, or the wrong one).
        raise TypeError(f"{name}.ADAPTER is not the {kind!r} ChatAdapter")
    return adapter
