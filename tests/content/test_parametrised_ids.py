"""Parametrised test ids under tests/content stay plain ASCII (mutmut re-selects them by id)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.content.conftest import plain_id

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e" / "test_content_edges_e2e.py"
PLAIN = re.compile(r"[A-Za-z0-9_.,=+@%-]+")


def test_plain_id_keeps_safe_text_and_spells_out_the_rest() -> None:
    assert plain_id("ssn 123-45-6789.") == "ssn_123-45-6789."
    assert plain_id("x[1::2] a/b") == "x_1__2__a_b"
    assert plain_id("al\u200bice") == "alu200bice"
    assert plain_id(b"?>? mail") == "____mail"
    assert plain_id("") == "empty"
    assert plain_id(len) == "len"
    assert plain_id(("email", "a@b.c")) is None  # pytest's own id (argname and index)
    assert plain_id(7) is None


def test_every_collected_content_test_id_is_plain(request: pytest.FixtureRequest) -> None:
    # Checks the tests collected in this session: run with the rest of tests/content (as the
    # suite and mutmut do), it sees every parametrised id there.
    for item in request.session.items:
        path = Path(str(item.path)).resolve()
        if path != E2E and HERE not in path.parents:
            continue
        params = item.name.partition("[")[2]
        if params:
            assert params.endswith("]") and PLAIN.fullmatch(params[:-1]), item.nodeid
