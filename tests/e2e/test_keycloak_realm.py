"""The Keycloak realm export (deploy/keycloak/regogate-realm.json) against the gateway config
that trusts it (deploy/keycloak/regogate.yaml), as far as this machine can check without a
Keycloak (no Docker here; docs/deployment.md says what stays untested): the issuer and JWKS
path name the realm, the audience mapper puts our audience in access tokens, the group and
role claims the config maps are the ones the realm's mappers and scopes emit, the policy's
groups exist, the CLI client redirects to loopback only; and a token shaped exactly as that
realm would issue it (claims, header, RS256) is verified by the gateway's own Authenticator
into the principal the policy expects."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml

from pep.auth import Authenticator
from pep.auth.settings import IdentitySettings
from tests.auth.fakeidp import FakeIdp, rsa_key, serve

ROOT = Path(__file__).resolve().parents[2]
REALM = json.loads((ROOT / "deploy" / "keycloak" / "regogate-realm.json").read_text())
CONFIG_TEXT = (ROOT / "deploy" / "keycloak" / "regogate.yaml").read_text()
# Keycloak's built-in client scopes a realm export may name without defining.
BUILT_IN_SCOPES = {"roles", "profile", "email", "web-origins", "acr", "basic", "address",
                   "phone", "offline_access", "microprofile-jwt"}


def _default(text: str) -> str:
    """``${VAR:-default}`` -> default (the value compose uses when .env does not set it)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def _issuer_conf() -> dict[str, Any]:
    config = yaml.safe_load(CONFIG_TEXT)
    (issuer,) = config["identity"]["issuers"]
    return {k: _default(v) if isinstance(v, str) else v for k, v in issuer.items()}


def _mapper(kind: str) -> dict[str, str]:
    (found,) = [m["config"] for s in REALM["clientScopes"] for m in s["protocolMappers"]
                if m["protocolMapper"] == kind]
    return dict(found)


def test_the_issuer_and_jwks_uri_name_the_realm() -> None:
    conf = _issuer_conf()
    realm = REALM["realm"]
    assert conf["issuer"] == f"http://localhost:8081/realms/{realm}"
    assert conf["jwks_uri"].endswith(f"/realms/{realm}/protocol/openid-connect/certs")
    assert REALM["enabled"] is True
    # Keycloak signs with the realm's default algorithm, RS256 unless the export says else.
    assert REALM.get("defaultSignatureAlgorithm", "RS256") in conf["algorithms"]
    # Keycloak access tokens say typ "Bearer" in the payload and "JWT" in the header: a
    # required_typ of at+jwt would refuse every one of them.
    assert "required_typ" not in conf


def test_the_realms_mappers_emit_the_audience_and_claims_the_gateway_maps() -> None:
    conf = _issuer_conf()
    audience = _mapper("oidc-audience-mapper")
    assert audience["included.custom.audience"] in conf["audiences"]
    assert audience["access.token.claim"] == "true"
    groups = _mapper("oidc-group-membership-mapper")
    assert groups["claim.name"] == conf["claims"]["groups"]
    assert groups["full.path"] == "false"  # "admins", the name the policy uses, not "/admins"
    assert groups["access.token.claim"] == "true"
    # roles: realm_access.roles comes from the built-in "roles" scope, name from "profile".
    assert conf["claims"]["roles"] == "realm_access.roles"
    assert conf["claims"]["name"] == "preferred_username"
    (client,) = REALM["clients"]
    scopes = set(client["defaultClientScopes"])
    assert {"roles", "profile"} <= scopes
    defined = {s["name"] for s in REALM["clientScopes"]}
    assert scopes <= defined | BUILT_IN_SCOPES, scopes - defined - BUILT_IN_SCOPES
    assert any(s in defined for s in scopes if s not in BUILT_IN_SCOPES)


def test_the_cli_client_is_public_and_redirects_to_loopback_only() -> None:
    (client,) = REALM["clients"]
    assert client["enabled"] is True and client["publicClient"] is True
    assert client["standardFlowEnabled"] is True
    assert client["redirectUris"] and all(
        re.match(r"^http://(localhost|127\.0\.0\.1)(:[0-9*]+)?(/.*)?$", u)
        for u in client["redirectUris"])


def test_every_users_groups_exist_and_the_policys_groups_are_there() -> None:
    groups = {g["name"] for g in REALM["groups"]}
    for user in REALM["users"]:
        assert {g.lstrip("/") for g in user.get("groups", [])} <= groups, user["username"]
        assert user["enabled"] is True and user["credentials"]
    data = yaml.safe_load((ROOT / "policies" / "data.yaml").read_text())["gateway"]
    assert set(data["admin_groups"]) <= groups
    realm_roles = {r["name"] for r in REALM["roles"]["realm"]}
    for user in REALM["users"]:
        assert set(user.get("realmRoles", [])) <= realm_roles | {"offline_access",
                                                                 "uma_authorization"}


@pytest.fixture
async def realm_keys() -> AsyncIterator[tuple[FakeIdp, str]]:
    """A JWKS endpoint standing in for Keycloak's certs endpoint (the realm's RS256 key)."""
    fake = FakeIdp(keys=[rsa_key("keycloak-rs256")])
    runner, url = await serve(fake.app())
    fake.issuer = url
    try:
        yield fake, url
    finally:
        await runner.cleanup()


async def test_a_token_as_the_realm_issues_it_becomes_the_principal_the_policy_expects(
    realm_keys: tuple[FakeIdp, str],
) -> None:
    fake, url = realm_keys
    conf = {**_issuer_conf(), "jwks_uri": f"{url}/jwks"}  # the only change: where keys are
    user = next(u for u in REALM["users"] if "/admins" in u.get("groups", []))
    (client,) = REALM["clients"]
    # The claims Keycloak puts in an access token for this user, client and mappers
    # (payload typ "Bearer", header typ "JWT").
    claims = fake.claims(
        iss=conf["issuer"], sub="5f0c4f6e-0000-4000-8000-000000000001",
        aud=[_mapper("oidc-audience-mapper")["included.custom.audience"], "account"],
        azp=client["clientId"], scope="openid profile email regogate",
        preferred_username=user["username"], email=user["email"],
        realm_access={"roles": user["realmRoles"]},
        groups=[g.lstrip("/") for g in user["groups"]], sid="session-1", acr="1")
    key = fake.keys[0]
    token = jwt.encode({**claims, "typ": "Bearer"}, key.private, algorithm="RS256",
                       headers={"kid": key.kid, "typ": "JWT"})
    async with aiohttp.ClientSession() as session:
        auth = Authenticator(IdentitySettings.model_validate({"issuers": [conf]}), session)
        await auth.start()
        try:
            principal = await auth.authenticate({"Authorization": f"Bearer {token}"})
        finally:
            await auth.close()
    assert principal.kind == "user" and principal.name == user["username"]
    assert set(principal.groups) == {g.lstrip("/") for g in user["groups"]}
    assert "admins" in principal.groups and set(user["realmRoles"]) <= set(principal.roles)
    assert principal.issuer == conf["issuer"] and principal.client_id == client["clientId"]
