"""OPA's REST API for the tests, with real OPA deciding (opa-golib-python-bindings)."""

from __future__ import annotations

import pytest

from tests.conftest import services_required
from tests.opa_double import oracle
from tests.opa_double.server import OpaDouble

__all__ = ["OpaDouble", "require_oracle"]


def require_oracle() -> None:
    """Skip without the oracle; in CI (REGOGATE_REQUIRE_SERVICES=1) fail instead: the OPA
    path must be tested against real OPA semantics there."""
    if oracle.available():
        return
    msg = ("opa-golib-python-bindings is not installed (python3 scripts/dev.py test installs "
           "it with --ignore-requires-python)")
    if services_required():
        pytest.fail(msg)
    pytest.skip(msg)
