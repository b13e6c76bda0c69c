"""Users and clients from YAML: the bundled file, overrides and clear errors."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from idp.directory import DirectoryError, load_directory
from idp.testing import running_idp, running_idp_sync
from tests.idp.conftest import verify_against_jwks


def test_bundled_users_file_has_the_demo_users_and_clients() -> None:
    directory = load_directory()
    alice = directory.users["alice"]
    assert (alice.email, alice.groups, alice.team) == (
        "alice@example.com",
        ("ml-team",),
        "research",
    )
    assert (directory.users["bob"].groups, directory.users["bob"].team) == (
        ("contractors",),
        "sales",
    )
    assert (directory.users["carol"].groups, directory.users["carol"].team) == (
        ("admins",),
        "platform",
    )
    assert (directory.users["erin"].groups, directory.users["erin"].team) == (
        ("auditors",),
        "compliance",
    )
    assert {"dev-cli", "chat-ui", "batch-service"} <= directory.clients.keys()


def test_client_secret_is_not_in_its_repr() -> None:
    client = load_directory().clients["dev-cli"]
    assert client.secret is not None and client.secret not in repr(client)


def test_invalid_users_file_names_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "users.yaml"
    bad.write_text(
        "users:\n  zoe:\n    groups: not-a-list-but-a-string\n    shoe_size: 9\nclients: {}\n"
    )
    with pytest.raises(DirectoryError, match="shoe_size") as info:
        load_directory(bad)
    assert str(bad) in str(info.value)


def test_unknown_grant_type_in_users_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "users.yaml"
    bad.write_text("users: {}\nclients:\n  app:\n    secret: s\n    grant_types: [password]\n")
    with pytest.raises(DirectoryError, match="password"):
        load_directory(bad)


def test_missing_users_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot read users file"):
        load_directory(tmp_path / "absent.yaml")


async def test_users_option_overrides_the_bundled_file(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text(
        "users:\n"
        "  zoe:\n"
        "    sub: 00u-zoe\n"
        "    groups: [ml-team]\n"
        "    team: research\n"
        "    extra: {realm_access: {roles: [reader]}}\n"
        "clients:\n"
        "  dev-cli: {secret: s3cret}\n"
    )
    async with running_idp(tmp_path / "data", users=users) as idp:
        assert "alice" not in idp.directory.users
        claims = await verify_against_jwks(
            http, idp.jwks_uri, idp.token("zoe"), issuer=idp.issuer, audience="regogate"
        )
    assert claims["sub"] == "00u-zoe"
    assert claims["realm_access"] == {"roles": ["reader"]}


def test_sync_helper_runs_the_idp_on_its_own_thread(tmp_path: Path) -> None:
    with running_idp_sync(tmp_path) as idp:
        with urllib.request.urlopen(idp.jwks_uri, timeout=5) as resp:
            kids = [k["kid"] for k in json.load(resp)["keys"]]
        assert kids == [idp.active_kid]
