"""OPA sidecar specifics: fail closed on timeout, errors and a dead sidecar; ids and revision.

The sidecar is OPA's REST API with real OPA deciding (tests/opa_double), serving the bundle
``regogate policy build`` makes of ``policies/``."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from pep.policy.engine import PolicyError
from pep.policy.opa import UNKNOWN_REVISION, OpaEngine
from pep.policy import bundle as bundle_mod
from tests.opa_double import OpaDouble, require_oracle
from tests.policy.conftest import POLICIES, build_bundle, policy_input


@pytest.fixture
async def double(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpaDouble]:
    require_oracle()
    server = OpaDouble(build_bundle(POLICIES, tmp_path_factory.mktemp("opa-bundle")))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def engine(double: OpaDouble) -> AsyncIterator[OpaEngine]:
    eng = OpaEngine(double.url, timeout_s=0.2)
    await eng.start()
    yield eng
    await eng.close()


async def test_opa_timeout_is_a_policy_timeout(double: OpaDouble, engine: OpaEngine) -> None:
    double.delay_s = 1.0
    with pytest.raises(PolicyError) as info:
        await engine.evaluate(policy_input())
    assert info.value.code == "policy_timeout"


async def test_opa_server_error_fails_closed(double: OpaDouble, engine: OpaEngine) -> None:
    double.fail_status = 503
    with pytest.raises(PolicyError) as info:
        await engine.evaluate(policy_input())
    assert info.value.code == "policy_unavailable"
    assert double.requests == 1  # no retries: one attempt, then fail closed


async def test_dead_opa_is_unavailable_and_not_ready() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = OpaEngine(f"http://127.0.0.1:{port}", timeout_s=0.2)
    await engine.start()
    try:
        with pytest.raises(PolicyError) as info:
            await engine.evaluate(policy_input())
        assert info.value.code == "policy_unavailable"
        ok, _ = await engine.ready()
        assert ok is False
        assert engine.revision == UNKNOWN_REVISION
    finally:
        await engine.close()


async def test_decision_id_is_the_request_id_and_opa_decision_id_is_kept(
    double: OpaDouble, engine: OpaEngine
) -> None:
    decision = await engine.evaluate(policy_input(request_id="req-7"))
    assert decision.decision_id == "req-7"
    assert decision.engine_decision_id and decision.engine_decision_id != "req-7"


async def test_request_id_reaches_opa_in_the_input_its_decision_log_records(
    double: OpaDouble, engine: OpaEngine
) -> None:
    await engine.evaluate(policy_input(request_id="req-corr-1"))
    assert double.request_ids[-1] == "req-corr-1"


async def test_no_engine_decision_id_without_opa_decision_logging(
    double: OpaDouble, engine: OpaEngine
) -> None:
    double.decision_logs = False
    decision = await engine.evaluate(policy_input(request_id="req-7"))
    assert decision.decision_id == "req-7"
    assert decision.engine_decision_id is None


async def test_revision_is_the_one_opa_reports_for_the_decision(
    double: OpaDouble, engine: OpaEngine
) -> None:
    double.status_plugin = False  # provenance alone must carry it
    expected = bundle_mod.load(POLICIES).revision
    assert double.bundle.revision == expected
    decision = await engine.evaluate(policy_input())
    assert decision.policy_revision == expected
    # OPA activates a new bundle: the very next decision names it, no refresh needed.
    double.bundle.manifest["revision"] = "sha256:reloaded"
    decision = await engine.evaluate(policy_input())
    assert decision.policy_revision == "sha256:reloaded"
    assert engine.revision == "sha256:reloaded"


async def test_revision_comes_from_opa_status_at_start(double: OpaDouble, engine: OpaEngine) -> None:
    assert engine.revision == double.bundle.revision


async def test_revision_is_unknown_for_a_directory_bundle_without_status(
    double: OpaDouble,
) -> None:
    require_oracle()
    plain = OpaDouble(POLICIES)  # a directory: no .manifest, no revision anywhere
    plain.status_plugin = False
    await plain.start()
    engine = OpaEngine(plain.url, timeout_s=0.5)
    await engine.start()
    try:
        decision = await engine.evaluate(policy_input())
        assert engine.revision == UNKNOWN_REVISION
        assert decision.policy_revision == UNKNOWN_REVISION
    finally:
        await engine.close()
        await plain.stop()


async def test_custom_decision_path_is_used(double: OpaDouble) -> None:
    engine = OpaEngine(double.url, "regogate/access/deny", timeout_s=0.5)
    await engine.start()
    try:
        with pytest.raises(PolicyError) as info:  # a set of reasons is not a decision
            await engine.evaluate(policy_input())
        assert info.value.code == "policy_invalid"
    finally:
        await engine.close()


async def test_opa_url_with_a_path_is_refused() -> None:
    engine = OpaEngine("http://127.0.0.1:8181/prefix")
    with pytest.raises(PolicyError):
        await engine.start()


async def test_readiness_asks_opa_whether_its_bundles_are_active(
    double: OpaDouble, engine: OpaEngine
) -> None:
    ok, detail = await engine.ready()
    assert ok is True and detail["revision"] == double.bundle.revision
    assert double.health_queries == ["bundles=True"]  # OPA reads booleans case-insensitively
