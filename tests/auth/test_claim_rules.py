"""The registered-claim rules of pep/auth/claims.py at their edges: exact boundaries of exp,
nbf and iat with and without leeway, type strictness, the ID-token heuristics, and the
messages a client is told (401 bodies carry them)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pep.auth.claims import check_audience, check_times, looks_like_id_token, normalise_typ
from pep.errors import Unauthorized

NOW = 1_700_000_000.0


def times(**claims: Any) -> dict[str, Any]:
    return {"exp": NOW + 60, "iat": NOW - 60, **claims}


def refused(claims: dict[str, Any], leeway: float = 0.0, now: float = NOW) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        check_times(claims, leeway, now)
    assert info.value.status == 401
    return info.value


def test_valid_times_return_exp_as_a_float() -> None:
    exp = check_times(times(nbf=NOW - 1), 0.0, NOW)
    assert exp == NOW + 60 and isinstance(exp, float)
    assert check_times({"exp": int(NOW) + 5, "iat": int(NOW)}, 0.0, NOW) == NOW + 5


def test_a_token_expires_at_exp_exactly() -> None:
    err = refused(times(exp=NOW))
    assert (err.code, err.message) == ("token_expired", "token has expired")
    assert check_times(times(exp=NOW + 0.001), 0.0, NOW) == NOW + 0.001


def test_leeway_extends_exp_up_to_but_not_including_exp_plus_leeway() -> None:
    assert check_times(times(exp=NOW - 29.999), 30.0, NOW) == NOW - 29.999
    assert refused(times(exp=NOW - 30), leeway=30.0).code == "token_expired"


def test_nbf_is_honoured_to_the_second_with_leeway() -> None:
    assert check_times(times(nbf=NOW), 0.0, NOW) == NOW + 60  # valid from nbf on
    err = refused(times(nbf=NOW + 0.5))
    assert (err.code, err.message) == ("token_not_yet_valid", "token is not valid yet")
    assert check_times(times(nbf=NOW + 30), 30.0, NOW) == NOW + 60
    assert refused(times(nbf=NOW + 30.5), leeway=30.0).code == "token_not_yet_valid"


def test_a_token_issued_in_the_future_is_refused_beyond_leeway() -> None:
    assert check_times(times(iat=NOW), 0.0, NOW) == NOW + 60
    err = refused(times(iat=NOW + 1))
    assert (err.code, err.message) == ("token_not_yet_valid", "token was issued in the future")
    assert check_times(times(iat=NOW + 30), 30.0, NOW) == NOW + 60
    assert refused(times(iat=NOW + 31), leeway=30.0).code == "token_not_yet_valid"


@pytest.mark.parametrize("name", ["exp", "iat"])
def test_exp_and_iat_are_required(name: str) -> None:
    claims = times()
    del claims[name]
    err = refused(claims)
    assert (err.code, err.message) == ("invalid_token", f"token claim {name!r} is missing")


def test_nbf_is_optional_but_null_is_not_a_number() -> None:
    assert check_times(times(), 0.0, NOW) == NOW + 60
    err = refused(times(nbf=None))
    assert (err.code, err.message) == ("invalid_token", "token claim 'nbf' must be a number")


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [None, "9999999999", True, False, [1], {"n": 1},
                                   math.inf, -math.inf, math.nan])
def test_time_claims_are_type_strict(name: str, value: Any) -> None:
    err = refused(times(**{name: value}))
    assert (err.code, err.message) == ("invalid_token", f"token claim {name!r} must be a number")


def test_audience_must_be_present_and_ours() -> None:
    check_audience("gw", ("gw",))
    check_audience(["other", "gw"], ("gw", "x"))
    with pytest.raises(Unauthorized) as info:
        check_audience(None, ("gw",))
    assert (info.value.code, info.value.message) == ("invalid_audience", "token has no audience")
    with pytest.raises(Unauthorized) as info:
        check_audience(["other"], ("gw",))
    assert (info.value.code, info.value.message) == (
        "invalid_audience", "token is not meant for this gateway")
    with pytest.raises(Unauthorized) as info:
        check_audience(["gw", 3], ("gw",))
    assert info.value.message == "token claim 'aud' must be a string or a list of strings"


@pytest.mark.parametrize(("typ", "expected"), [
    ("at+jwt", "at+jwt"), ("AT+JWT", "at+jwt"), ("application/at+jwt", "at+jwt"),
    ("Application/AT+JWT", "at+jwt"), ("JWT", "jwt"), ("x/application/at+jwt", "x/application/at+jwt"),
])
def test_typ_is_compared_case_insensitively_without_the_media_prefix(typ: str, expected: str) -> None:
    assert normalise_typ(typ) == expected


ID_LIKE = {"azp": "app", "aud": "app", "auth_time": 1}


@pytest.mark.parametrize(("typ", "claims", "is_id"), [
    (None, {"nonce": "n"}, True),
    ("JWT", {"at_hash": "h"}, True),
    (None, {"c_hash": "h"}, True),
    (None, {"typ": "ID"}, True),
    (None, {"typ": "Bearer"}, False),
    ("at+jwt", {"nonce": "n", "typ": "ID"}, False),  # an RFC 9068 access token says so
    ("application/at+jwt", {"nonce": "n"}, False),
    (None, ID_LIKE, True),
    (None, {**ID_LIKE, "aud": ["app"]}, True),
    (None, {**ID_LIKE, "aud": ["app", "gw"]}, False),
    (None, {**ID_LIKE, "aud": ["gw", "app"]}, False),
    (None, {**ID_LIKE, "aud": []}, False),
    (None, {**ID_LIKE, "aud": "gw"}, False),
    (None, {**ID_LIKE, "aud": None}, False),
    (None, {**ID_LIKE, "scope": "openid"}, False),
    (None, {**ID_LIKE, "scp": ["read"]}, False),
    (None, {k: v for k, v in ID_LIKE.items() if k != "auth_time"}, False),
    (None, {k: v for k, v in ID_LIKE.items() if k != "azp"}, False),
    (None, {}, False),
])
def test_id_token_heuristics(typ: str | None, claims: dict[str, Any], is_id: bool) -> None:
    assert looks_like_id_token(typ, claims) is is_id
