"""OPA sidecar specifics: fail closed on timeout, errors and a dead sidecar; ids and revision."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from pep.policy.engine import PolicyError
from pep.policy.opa import UNKNOWN_REVISION, OpaEngine
from tests.opa_double import OpaDouble
from tests.policy.conftest import POLICIES, policy_input


@pytest.fixture
async def double() -> AsyncIterator[OpaDouble]:
    server = OpaDouble(POLICIES)
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


async def test_decision_id_comes_from_opa_decision_logging(
    double: OpaDouble, engine: OpaEngine
) -> None:
    decision = await engine.evaluate(policy_input(request_id="req-7"))
    assert decision.decision_id and decision.decision_id != "req-7"


async def test_decision_id_falls_back_to_request_id(double: OpaDouble, engine: OpaEngine) -> None:
    double.decision_logs = False
    decision = await engine.evaluate(policy_input(request_id="req-7"))
    assert decision.decision_id == "req-7"


async def test_revision_comes_from_opa_status(double: OpaDouble, engine: OpaEngine) -> None:
    assert engine.revision == double.bundle.revision


async def test_revision_is_unknown_without_status_plugin(double: OpaDouble) -> None:
    double.status_plugin = False
    engine = OpaEngine(double.url, timeout_s=0.2)
    await engine.start()
    try:
        assert engine.revision == UNKNOWN_REVISION
    finally:
        await engine.close()


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
