"""A test double for the parts of OPA's REST API regogate uses, backed by the embedded engine."""

from tests.opa_double.server import OpaDouble

__all__ = ["OpaDouble"]
