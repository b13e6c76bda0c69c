"""A decision made by the OPA sidecar is traceable: the audit record names the bundle revision
OPA evaluated (the .manifest revision of `regogate policy build`, which is the same content
hash the embedded engine reports) and both ids, the gateway's request id and OPA's own
decision id, and OPA received the request id for its decision log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from pep.defaults import repo_policies_dir
from pep.policy import bundle as bundle_mod
from tests.e2e.conftest import upstream_config
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, running_gateway
from tests.opa_double import OpaDouble, require_oracle
from tests.policy.conftest import build_bundle

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpaDouble]:
    require_oracle()
    server = OpaDouble(build_bundle(repo_policies_dir(), tmp_path_factory.mktemp("opa-bundle")))
    await server.start()
    yield server
    await server.stop()


def _config(server: OpaDouble, upstream: FakeServer) -> dict[str, Any]:
    return deep_merge(upstream_config(upstream),
                      {"policy": {"engine": "opa", "opa_url": server.url, "timeout_s": 2.0}})


async def test_allowed_request_audit_names_opa_revision_and_both_decision_ids(
    tmp_path: Path, upstream: FakeServer, sidecar: OpaDouble
) -> None:
    async with running_gateway(tmp_path, config=_config(sidecar, upstream)) as gw:
        resp = await gw.openai("alice").chat.completions.with_raw_response.create(
            model="mock-gpt", messages=HELLO)
        rid = resp.headers["x-request-id"]
        events = [e for e in await gw.audit_records() if e["request_id"] == rid]
    revision = bundle_mod.load(repo_policies_dir()).revision
    intent = next(e for e in events if e["event"] == "request.intent")
    assert intent["decision_id"] == rid
    assert intent["decision"]["engine"] == "opa"
    assert intent["decision"]["policy_revision"] == revision
    engine_id = intent["decision"]["engine_decision_id"]
    assert engine_id and engine_id != rid
    assert rid in sidecar.request_ids  # OPA's decision log records it as input.request.id


async def test_denied_request_audit_names_opa_revision_and_both_decision_ids(
    tmp_path: Path, upstream: FakeServer, sidecar: OpaDouble
) -> None:
    async with running_gateway(tmp_path, config=_config(sidecar, upstream)) as gw:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await gw.openai("bob").chat.completions.create(model="mock-gpt-admin", messages=HELLO)
        events = await gw.audit_records()
    rid = info.value.response.headers["x-request-id"]
    (deny,) = [e for e in events if e["request_id"] == rid]
    assert deny["event"] == "policy.deny"
    assert deny["decision_id"] == rid
    assert deny["decision"]["policy_revision"] == bundle_mod.load(repo_policies_dir()).revision
    assert deny["decision"]["engine_decision_id"] not in (None, rid)
    assert upstream.requests == []
