"""Claim mapping (Keycloak, Entra, Auth0 shapes), service tokens, delegation, and where the
token is read from."""

from __future__ import annotations

import time
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from pep.auth import Authenticator
from pep.auth.claims import ClaimMapper, looks_like_id_token
from pep.auth.credentials import extract_token
from pep.auth.settings import IssuerSettings
from pep.errors import BadRequest, Unauthorized
from tests.auth.conftest import MakeAuth, bearer, rejected
from tests.auth.fakeidp import FakeIdp


def mapper(**conf: Any) -> ClaimMapper:
    return ClaimMapper(IssuerSettings.model_validate({"issuer": "https://idp", "audiences": ["a"], **conf}))


BASE = {"sub": "u-1", "iat": 1, "exp": 2}


# -- mapping -------------------------------------------------------------------------------


def test_keycloak_nested_realm_roles_are_mapped() -> None:
    m = mapper(claims={"roles": "realm_access.roles", "name": "preferred_username"})
    claims = {**BASE, "realm_access": {"roles": ["offline_access", "ml-user"]}, "preferred_username": "alice"}
    p = m.principal(claims, 2)
    assert p.roles == ("offline_access", "ml-user") and p.name == "alice"


def test_entra_roles_and_groups_are_mapped_with_group_teams() -> None:
    m = mapper(claims={"groups": "groups", "roles": "roles", "email": "preferred_username"},
               group_teams={"8f3c-research": "research", "11aa-finance": "finance"})
    claims = {**BASE, "groups": ["8f3c-research", "zz"], "roles": ["Gateway.User"],
              "preferred_username": "alice@contoso.com", "azp": "app-1"}
    p = m.principal(claims, 2)
    assert p.groups == ("8f3c-research", "zz") and p.roles == ("Gateway.User",)
    assert p.teams == ("research",) and p.team == "research"
    assert p.email == "alice@contoso.com" and p.client_id == "app-1" and p.kind == "user"


@pytest.mark.parametrize(("value", "teams"), [("ml", ("ml",)), (["ml", "ops"], ("ml", "ops")), (None, ())])
def test_teams_come_from_a_string_or_a_list(value: Any, teams: tuple[str, ...]) -> None:
    claims = {**BASE} if value is None else {**BASE, "team": value}
    assert mapper().principal(claims, 2).teams == teams


def test_static_group_map_adds_teams_after_token_teams_without_duplicates() -> None:
    m = mapper(group_teams={"g1": "ml", "g2": "ops"})
    assert m.principal({**BASE, "team": "ml", "groups": ["g2", "g1"]}, 2).teams == ("ml", "ops")


def test_url_named_custom_claims_are_read_literally() -> None:
    m = mapper(claims={"groups": "https://example.com/groups"})
    assert m.principal({**BASE, "https://example.com/groups": ["a"]}, 2).groups == ("a",)


@pytest.mark.parametrize(
    "claims",
    [{"groups": "admins,ml"}, {"groups": [1, 2]}, {"email": ["a@b"]}, {"name": 5}, {"team": {"t": 1}},
     {"act": "alice"}, {"jti": 7}, {"azp": 9}],
)
def test_ill_typed_mapped_claims_are_rejected(claims: dict[str, Any]) -> None:
    if claims == {"groups": "admins,ml"}:  # a single group as a string is fine
        assert mapper().principal({**BASE, **claims}, 2).groups == ("admins,ml",)
        return
    with pytest.raises(Unauthorized):
        mapper().principal({**BASE, **claims}, 2)


def test_client_id_comes_from_azp_then_client_id() -> None:
    assert mapper().principal({**BASE, "client_id": "cli"}, 2).client_id == "cli"
    assert mapper().principal({**BASE, "azp": "web", "client_id": "cli"}, 2).client_id == "web"
    assert mapper(claims={"client": ["cid"]}).principal({**BASE, "cid": "okta-app"}, 2).client_id == "okta-app"


def test_rfc8693_actor_is_preserved_with_nesting() -> None:
    act = {"sub": "agent-7", "act": {"sub": "orchestrator"}}
    p = mapper().principal({**BASE, "act": act}, 2)
    assert p.actor == act and p.sub == "u-1"


@pytest.mark.parametrize(
    ("claims", "conf", "kind"),
    [
        ({"sub": "batch", "client_id": "batch"}, {}, "service"),  # Okta / RFC 9068
        ({"sub": "abc@clients", "azp": "abc"}, {}, "service"),  # Auth0
        ({"sub": "9f-uuid", "azp": "batch", "client_id": "batch"}, {}, "user"),  # needs config
        ({"sub": "9f-uuid", "idtyp": "app"}, {"service_when": {"idtyp": "app"}}, "service"),  # Entra
        ({"sub": "9f-uuid", "client_id": "x"}, {"service_when": {"client_id": "*"}}, "service"),  # Keycloak
        ({"sub": "9f-uuid", "gty": ["client-credentials"]}, {"service_when": {"gty": "client-credentials"}}, "service"),
        ({"sub": "alice", "azp": "chat-ui"}, {"service_when": {"idtyp": "app"}}, "user"),
    ],
)
def test_service_tokens_are_recognised(claims: dict[str, Any], conf: dict[str, Any], kind: str) -> None:
    assert mapper(**conf).principal({"iat": 1, "exp": 2, **claims}, 2).kind == kind


def test_id_token_rule() -> None:
    now = int(time.time())
    assert looks_like_id_token("JWT", {"nonce": "n"})
    assert looks_like_id_token(None, {"at_hash": "x"})
    assert looks_like_id_token("JWT", {"typ": "ID"})  # Keycloak
    assert looks_like_id_token("JWT", {"aud": "app", "azp": "app", "auth_time": now})
    assert not looks_like_id_token("JWT", {"aud": "app", "azp": "app", "auth_time": now, "scope": "x"})
    assert not looks_like_id_token("at+jwt", {"nonce": "n"})
    assert not looks_like_id_token("JWT", {"aud": "api", "azp": "app", "auth_time": now})


async def test_principal_carries_all_verified_claims(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"claims": {"roles": "realm_access.roles"}})
    token = idp.token(realm_access={"roles": ["ml-user"]}, act={"sub": "agent"}, azp="chat-ui")
    p = await auth.authenticate(bearer(token))
    assert p.roles == ("ml-user",) and p.actor == {"sub": "agent"} and p.client_id == "chat-ui"
    assert p.claims["email"] == "alice@example.com" and p.issuer == idp.issuer
    assert p.token_id == p.claims["jti"] and p.expires_at == p.claims["exp"]


async def test_id_tokens_are_accepted_only_when_the_issuer_opts_in(make_auth: MakeAuth, idp: FakeIdp) -> None:
    auth = await make_auth(issuer={"accept_id_tokens": True})
    token = idp.token(typ="JWT", nonce="n", azp="regogate", auth_time=int(time.time()), scope=...)
    assert (await auth.authenticate(bearer(token))).sub == "alice"


# -- where the token comes from ------------------------------------------------------------


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_bearer_token_is_read_case_insensitively() -> None:
    assert extract_token(headers(("authorization", "bearer abc.def.ghi")), 100) == "abc.def.ghi"
    assert extract_token({"AUTHORIZATION": "Bearer  tok"}, 100) == "tok"


def test_x_api_key_is_accepted_for_the_anthropic_sdk() -> None:
    assert extract_token(headers(("x-api-key", "abc.def.ghi")), 100) == "abc.def.ghi"


def test_same_token_in_both_headers_is_fine() -> None:
    assert extract_token(headers(("Authorization", "Bearer t1"), ("x-api-key", "t1")), 100) == "t1"


def test_two_different_credentials_are_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        extract_token(headers(("Authorization", "Bearer t1"), ("x-api-key", "t2")), 100)


def test_repeated_authorization_header_is_a_bad_request() -> None:
    with pytest.raises(BadRequest):
        extract_token(headers(("Authorization", "Bearer t1"), ("Authorization", "Bearer t1")), 100)


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer a\tb", "Bearer tok\u00e9n", "Bearer =abc"])
def test_malformed_authorization_header_is_a_bad_request(value: str) -> None:
    with pytest.raises(BadRequest):
        extract_token(headers(("Authorization", value)), 100)


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Token abc", "abc.def.ghi"])
def test_other_authorization_schemes_are_missing_credentials(value: str) -> None:
    with pytest.raises(Unauthorized) as info:
        extract_token(headers(("Authorization", value)), 100)
    assert info.value.code == "missing_token"


def test_missing_token_is_unauthorized_with_a_challenge() -> None:
    with pytest.raises(Unauthorized) as info:
        extract_token(headers(("Cookie", "access_token=abc")), 100)
    assert info.value.code == "missing_token"
    assert info.value.headers["WWW-Authenticate"].startswith("Bearer")


async def test_token_in_the_query_string_is_never_used(auth: Authenticator, idp: FakeIdp) -> None:
    # The authenticator only ever sees headers; a path-with-query header is just noise.
    err = await rejected(auth, {":path": f"/v1/chat?access_token={idp.token()}"})
    assert err.code == "missing_token"
