"""Every registered adapter is an object implementing adapters.base.ChatAdapter, with the
optional capabilities its provider has, and the router uses exactly those."""

from __future__ import annotations

import aiohttp
import pytest

from adapters import anthropic, azure_openai, bedrock, gemini, mock, openai, openai_compatible
from adapters import registry
from adapters.base import ChatAdapter, EmbeddingsAdapter, InProcessAdapter, PreparingAdapter
from pep.errors import BadRequest
from pep.routing.router import Router
from pep.routing.settings import ModelSettings, ProviderSettings
from tests.adapters.routed import route_fails

# Checked by mypy --strict (tests/test_lint.py): each object satisfies the Protocols named.
CHAT: dict[str, ChatAdapter] = {
    "mock": mock.ADAPTER, "openai": openai.ADAPTER,
    "openai_compatible": openai_compatible.ADAPTER, "azure_openai": azure_openai.ADAPTER,
    "anthropic": anthropic.ADAPTER, "gemini": gemini.ADAPTER, "bedrock": bedrock.ADAPTER,
}
EMBEDDINGS: dict[str, EmbeddingsAdapter] = {
    "mock": mock.ADAPTER, "openai": openai.ADAPTER,
    "openai_compatible": openai_compatible.ADAPTER, "azure_openai": azure_openai.ADAPTER,
    "gemini": gemini.ADAPTER,
}
PREPARING: dict[str, PreparingAdapter] = {"bedrock": bedrock.ADAPTER}
IN_PROCESS: dict[str, InProcessAdapter] = {"mock": mock.ADAPTER}


@pytest.mark.parametrize("kind", registry.kinds())
def test_the_registry_returns_each_kinds_adapter_with_exactly_its_capabilities(kind: str) -> None:
    adapter = registry.get(kind)
    assert adapter is CHAT[kind] and adapter.kind == kind
    assert isinstance(adapter, EmbeddingsAdapter) == (kind in EMBEDDINGS)
    assert isinstance(adapter, PreparingAdapter) == (kind in PREPARING)
    assert isinstance(adapter, InProcessAdapter) == (kind in IN_PROCESS)


def test_every_registered_kind_is_listed_here() -> None:
    assert sorted(registry.kinds()) == sorted(CHAT)


def test_an_unknown_kind_is_a_config_error_naming_the_kinds() -> None:
    with pytest.raises(ValueError, match="unknown provider kind 'nope'; one of mock, openai"):
        registry.get("nope")


async def test_embeddings_on_a_provider_without_the_capability_are_refused(
        session: aiohttp.ClientSession) -> None:
    router = Router({"a": ProviderSettings(kind="anthropic", api_key="sk-ant-test")},
                    {"emb": ModelSettings(provider="a", model="m", embeddings=True)}, session)
    with route_fails(BadRequest) as e:
        await router.embeddings({"model": "emb", "input": "hello"}, "emb", request_id="r")
    assert e.value.code == "unsupported_operation" and e.value.param == "model"
    # Refused while translating, before anything was sent: no attempt, no deployment served.
    assert e.failure.attempts == [] and e.failure.served is None


async def test_an_openai_compatible_provider_without_base_url_is_refused_at_startup(
        session: aiohttp.ClientSession) -> None:
    # No default URL: an OpenAI-compatible server is wherever the operator runs it.
    with pytest.raises(ValueError, match="providers.local: openai_compatible needs base_url"):
        Router({"local": ProviderSettings(kind="openai_compatible")},
               {"llama": ModelSettings(provider="local", model="llama")}, session)
