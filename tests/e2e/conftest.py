"""Fixtures for gateway-level tests: a policy engine of either kind, a counting upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pep.defaults import repo_policies_dir
from tests.fakes.openai_wire import reply
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.opa_double import OpaDouble, require_oracle
from tests.policy.conftest import _RealOpa, build_bundle, opa_binary


@pytest.fixture(params=["embedded", "opa"])
async def engine_config(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """Policy config for each engine. 'opa' serves the bundle `regogate policy build` makes of
    the shipped policies from a real `opa run --server` when a binary is on PATH or in
    OPA_BIN, otherwise from OPA's REST API with real OPA deciding (tests/opa_double)."""
    if request.param == "embedded":
        yield {}
        return
    binary = opa_binary()
    if binary is None:
        require_oracle()
    built = build_bundle(repo_policies_dir(), tmp_path_factory.mktemp("opa-bundle"))
    server: Any = _RealOpa(binary, built) if binary else OpaDouble(built)
    url = await server.start()
    try:
        yield {"policy": {"engine": "opa", "opa_url": url}}
    finally:
        await server.stop()


@pytest.fixture
async def upstream() -> AsyncIterator[FakeServer]:
    """An OpenAI wire-format fake that records what it receives (to prove 'nothing was
    forwarded' and to see what obligations changed)."""

    def answer(rec: Recorded) -> Reply:
        return reply("Hello from the fake upstream.")

    async with FakeServer(answer) as server:
        yield server


def upstream_config(server: FakeServer) -> dict[str, Any]:
    """Route the dev models to the fake instead of the in-process mock."""
    return {
        "providers": {"up": {"kind": "openai", "base_url": server.url + "/v1",
                             "api_key": "sk-test-not-a-real-key"}},
        "models": {
            "mock-gpt": {"provider": "up", "model": "gpt-upstream"},
            "mock-gpt-admin": {"provider": "up", "model": "gpt-upstream-admin"},
            "mock-gpt-eu": {"provider": "up", "model": "gpt-upstream-eu"},
            "mock-embed": {"provider": "up", "model": "embed-upstream", "embeddings": True},
        },
    }


def write_bundle(root: Path, rego: str, data: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "policy.rego").write_text(rego)
    if data is not None:
        (root / "data.json").write_text(data)
    return root
