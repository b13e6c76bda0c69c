"""The registered-claim rules of pep/auth/claims.py at their edges: exact boundaries of exp,
nbf and iat with and without leeway, type strictness, the ID-token heuristics, and the
messages a client is told (401 bodies carry them)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pep.auth.claims import (
    ClaimMapper,
    check_audience,
    check_times,
    looks_like_id_token,
    normalise_typ,
)
from pep.auth.settings import IssuerSettings
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


# -- claim mapping -> Principal ---------------------------------------------------------------

ISS = "https://idp.example.com"
BASE = {"iss": ISS, "sub": "alice", "aud": "gw", "exp": NOW + 60, "iat": NOW}


def mapper(**issuer: Any) -> ClaimMapper:
    return ClaimMapper(IssuerSettings.model_validate({"issuer": ISS, "audiences": ["gw"], **issuer}))


def mapping_error(m: ClaimMapper, claims: dict[str, Any]) -> str:
    with pytest.raises(Unauthorized) as info:
        m.principal(claims, NOW + 60)
    assert info.value.code == "invalid_token"
    return info.value.message


def test_a_principal_carries_the_mapped_claims_and_exp() -> None:
    p = mapper().principal({**BASE, "azp": "chat-ui", "groups": ["ml"], "jti": "j1"}, NOW + 60.9)
    assert (p.sub, p.issuer, p.kind, p.client_id, p.groups, p.token_id) == (
        "alice", ISS, "user", "chat-ui", ("ml",), "j1")
    assert p.expires_at == int(NOW + 60.9)


def test_an_introspected_principal_may_have_no_exp() -> None:
    assert mapper().principal(BASE, None).expires_at is None


def test_with_no_client_claims_configured_there_is_no_client() -> None:
    p = mapper(claims={"client": []}).principal({**BASE, "azp": "chat-ui"}, None)
    assert p.client_id is None


@pytest.mark.parametrize(("claims", "message"), [
    ({**BASE, "sub": ""}, "token has no subject"),
    ({k: v for k, v in BASE.items() if k != "sub"}, "token has no subject"),
    ({**BASE, "sub": 7}, "token claim 'sub' must be a string"),
    ({**BASE, "email": ["a@b"]}, "token claim 'email' must be a string"),
    ({**BASE, "groups": "ml"}, None),
    ({**BASE, "groups": [1]}, "token claim 'groups' must be a string or a list of strings"),
    ({**BASE, "act": "bob"}, "token claim 'act' must be an object"),
    ({**BASE, "jti": 5}, "token claim 'jti' must be a string"),
])
def test_ill_typed_mapped_claims_are_refused_by_name(claims: dict[str, Any], message: str | None) -> None:
    m = mapper()
    if message is None:
        assert m.principal(claims, None).groups == ("ml",)
    else:
        assert mapping_error(m, claims) == message


def test_a_nested_claim_path_names_itself_in_errors() -> None:
    m = mapper(claims={"groups": "realm_access.roles"})
    assert m.principal({**BASE, "realm_access": {"roles": ["r"]}}, None).groups == ("r",)
    assert mapping_error(m, {**BASE, "realm_access": {"roles": 3}}) == (
        "token claim 'realm_access.roles' must be a string or a list of strings")
    m = mapper(claims={"email": "profile.mail"})
    assert mapping_error(m, {**BASE, "profile": {"mail": 3}}) == (
        "token claim 'profile.mail' must be a string")


@pytest.mark.parametrize(("service_when", "claims", "kind"), [
    ({"gty": "client-credentials"}, {"gty": "client-credentials"}, "service"),
    ({"gty": "client-credentials"}, {"gty": "password"}, "user"),
    ({"gty": "client-credentials"}, {}, "user"),
    ({"scope": "svc"}, {"scope": "not-svc-at-all"}, "user"),  # equality, not a substring
    ({"roles": "svc"}, {"roles": ["a", "svc"]}, "service"),
    ({"roles": "svc"}, {"roles": ["a"]}, "user"),
    ({"client_kind": "*", "gty": "cc"}, {"client_kind": "x", "gty": "other"}, "user"),
    ({"client_kind": "*", "gty": "cc"}, {"client_kind": "x", "gty": "cc"}, "service"),
    ({"client_kind": "*"}, {}, "user"),
])
def test_service_tokens_need_every_service_when_claim(
    service_when: dict[str, str], claims: dict[str, Any], kind: str
) -> None:
    assert mapper(service_when=service_when).principal({**BASE, **claims}, None).kind == kind


@pytest.mark.parametrize(("sub", "kind"), [("chat-ui", "service"), ("chat-ui@clients", "service"),
                                           ("alice", "user")])
def test_a_subject_equal_to_the_client_is_a_service(sub: str, kind: str) -> None:
    assert mapper().principal({**BASE, "sub": sub, "azp": "chat-ui"}, None).kind == kind
