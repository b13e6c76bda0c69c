"""Extensions behave as OPA's builtins (values from OPA v1.9)."""

from __future__ import annotations

from typing import Any

import pytest

from pep.policy.compiled import eval_rule, load_modules, new_engine


def _eval(expr: str) -> Any:
    engine = new_engine()
    load_modules(engine, {"t.rego": f"package t\nimport rego.v1\nx := {expr}\n"}, {})
    return eval_rule(engine, "data.t.x")


def test_sha256_matches_opa() -> None:
    assert _eval('crypto.sha256("abc")') == (
        True,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )


def test_hmac_sha256_matches_rfc4231() -> None:
    # RFC 4231 test case 2.
    want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert _eval('crypto.hmac.sha256("what do ya want for nothing?", "Jefe")') == (True, want)


def test_jwt_decode_matches_opa() -> None:
    assert _eval('io.jwt.decode("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln")') == (
        True,
        [{"alg": "HS256"}, {"sub": "alice"}, "736967"],
    )


def test_jwt_decode_of_garbage_is_an_error() -> None:
    with pytest.raises(Exception, match="io.jwt.decode"):
        _eval('io.jwt.decode("not-a-jwt")')


def test_sets_of_arrays_survive_evaluation() -> None:
    assert _eval("{[1, 2], [3]}") == (True, [[1, 2], [3]])
