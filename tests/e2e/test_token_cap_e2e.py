"""The max_tokens obligation through the real gateway (official SDKs): the cap applies to every
output-token field the request carries, on /v1/chat/completions and /v1/messages, and reaches
each provider in that provider's own field.

Regression: with ``max_tokens: 500, max_completion_tokens: 400`` and a policy cap of 7 the
provider used to receive ``max_tokens: 500, max_completion_tokens: 7``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.adapters.test_golden import KEY, UPSTREAM_MODEL
from tests.e2e.conftest import upstream_config, write_bundle
from tests.fakes import wire
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, running_gateway

HELLO = [{"role": "user", "content": "Hello"}]
CAP = 7
PROVIDERS = ["openai", "openai_compatible", "azure_openai", "anthropic", "gemini", "bedrock"]
MODEL = {**UPSTREAM_MODEL, "openai_compatible": "llama-3.1-8b-instruct"}


def cap_policy(tmp_path: Path, cap: int = CAP) -> dict[str, Any]:
    rego = ("package regogate\n\nimport rego.v1\n\n"
            f'decision := {{"allow": true, "obligations": {{"max_tokens": {cap}}}}}\n')
    return {"policy": {"bundle": str(write_bundle(tmp_path / "bundle", rego))}}


def sent(server: FakeServer) -> dict[str, Any]:
    (rec,) = server.requests
    body: dict[str, Any] = orjson.loads(rec.body)
    return body


def provider_cap(kind: str, body: dict[str, Any]) -> Any:
    """The output-token limit as the provider's own API spells it."""
    if kind == "gemini":
        return body["generationConfig"]["maxOutputTokens"]
    if kind == "bedrock":
        return body["inferenceConfig"]["maxTokens"]
    return body["max_tokens"]


def routed_to(kind: str, fake: FakeServer) -> dict[str, Any]:
    if kind == "bedrock":
        p: dict[str, Any] = {"kind": kind, "base_url": fake.url, "region": "us-east-1",
                             "aws_access_key_id": "AKIDEXAMPLE", "aws_secret_access_key": KEY}
    else:
        p = {"kind": kind, "base_url": fake.url, "api_key": KEY}
    return {"providers": {"p": p},
            "models": {"mock-gpt": {"provider": "p", "model": MODEL[kind]}}}


TOKEN_FIELDS = [
    ("both fields", {"max_tokens": 500, "max_completion_tokens": 400},
     {"max_tokens": CAP, "max_completion_tokens": CAP}),
    ("max_completion_tokens only", {"max_completion_tokens": 400}, {"max_completion_tokens": CAP}),
    ("max_tokens only", {"max_tokens": 500}, {"max_tokens": CAP}),
    ("neither", {}, {"max_tokens": CAP}),
    ("both below the cap", {"max_tokens": 5, "max_completion_tokens": 3},
     {"max_tokens": 5, "max_completion_tokens": 3}),
    ("one above, one below", {"max_tokens": 3, "max_completion_tokens": 400},
     {"max_tokens": 3, "max_completion_tokens": CAP}),
]


@pytest.mark.parametrize("case", TOKEN_FIELDS, ids=[c[0] for c in TOKEN_FIELDS])
async def test_chat_completions_cap_applies_to_every_token_field(
    tmp_path: Path, upstream: FakeServer, case: tuple[str, dict[str, int], dict[str, int]]
) -> None:
    _, asked, expected = case
    config = deep_merge(upstream_config(upstream), cap_policy(tmp_path))
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO, **asked)
    body = sent(upstream)
    assert {k: body.get(k) for k in ("max_tokens", "max_completion_tokens") if k in body} == expected


async def test_messages_cap_reaches_an_openai_provider(tmp_path: Path, upstream: FakeServer) -> None:
    config = deep_merge(upstream_config(upstream), cap_policy(tmp_path))
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.anthropic("alice").messages.create(model="mock-gpt", max_tokens=500,
                                                     messages=HELLO)
    body = sent(upstream)
    assert body["max_tokens"] == CAP
    assert "max_completion_tokens" not in body


async def test_messages_below_the_cap_keeps_the_clients_limit(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), cap_policy(tmp_path))
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.anthropic("alice").messages.create(model="mock-gpt", max_tokens=3, messages=HELLO)
    assert sent(upstream)["max_tokens"] == 3


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_chat_completions_cap_reaches_each_provider_in_its_own_field(
    tmp_path: Path, kind: str
) -> None:
    async with FakeServer([wire.plain(kind)]) as fake, running_gateway(
            tmp_path, config=deep_merge(routed_to(kind, fake), cap_policy(tmp_path))) as gw:
        await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=HELLO, max_tokens=500, max_completion_tokens=400)
    body = sent(fake)
    assert provider_cap(kind, body) == CAP
    assert body.get("max_completion_tokens", CAP) == CAP


@pytest.mark.parametrize("kind", PROVIDERS)
async def test_messages_cap_reaches_each_provider_in_its_own_field(
    tmp_path: Path, kind: str
) -> None:
    async with FakeServer([wire.plain(kind)]) as fake, running_gateway(
            tmp_path, config=deep_merge(routed_to(kind, fake), cap_policy(tmp_path))) as gw:
        await gw.anthropic("alice").messages.create(model="mock-gpt", max_tokens=500,
                                                     messages=HELLO)
    assert provider_cap(kind, sent(fake)) == CAP


async def test_responses_max_output_tokens_is_capped(tmp_path: Path, upstream: FakeServer) -> None:
    config = deep_merge(upstream_config(upstream), cap_policy(tmp_path))
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.openai("alice").responses.create(model="mock-gpt", input="Hello",
                                                  max_output_tokens=500)
    body = sent(upstream)
    assert body["max_tokens"] == CAP and body.get("max_completion_tokens", CAP) == CAP


async def test_responses_without_a_limit_gets_the_cap(tmp_path: Path, upstream: FakeServer) -> None:
    config = deep_merge(upstream_config(upstream), cap_policy(tmp_path))
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.openai("alice").responses.create(model="mock-gpt", input="Hello")
    assert sent(upstream)["max_tokens"] == CAP


async def test_legacy_completions_max_tokens_is_capped(tmp_path: Path, upstream: FakeServer) -> None:
    config = deep_merge(upstream_config(upstream), cap_policy(tmp_path))
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.openai("alice").completions.create(model="mock-gpt", prompt="Hello",
                                                    max_tokens=500)
    assert sent(upstream)["max_tokens"] == CAP
