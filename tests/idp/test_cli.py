"""``python -m idp ...`` as a user runs it (child processes), verified like a relying party."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from idp.server import NonLoopbackError, start_server
from idp.testing import RunningIdp, idp_subprocess
from tests.idp.conftest import basic, header_of, verify_against_jwks

REPO = Path(__file__).resolve().parents[2]


def run_idp(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "idp", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=full_env,
    )


async def test_cli_token_for_alice_verifies_against_the_running_servers_jwks(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    result = run_idp("token", "alice", "--data-dir", str(idp.data_dir))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="regogate"
    )
    assert claims["sub"] == "alice"
    assert claims["groups"] == ["ml-team"]
    assert claims["team"] == "research"
    assert header_of(token)["typ"] == "at+jwt"


async def test_cli_client_token_is_a_service_token(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    result = run_idp(
        "token", "--client", "batch-service", "--audience", "aud-x", "--data-dir", str(idp.data_dir)
    )
    assert result.returncode == 0, result.stderr
    claims = await verify_against_jwks(
        http, idp.jwks_uri, result.stdout.strip(), issuer=idp.issuer, audience="aud-x"
    )
    assert claims["sub"] == "batch-service"
    assert "email" not in claims


async def test_cli_id_token_is_typed_jwt_for_the_client(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    result = run_idp(
        "token", "bob", "--id-token", "--nonce", "abc", "--data-dir", str(idp.data_dir)
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert header_of(token)["typ"] == "JWT"
    claims = await verify_against_jwks(
        http, idp.jwks_uri, token, issuer=idp.issuer, audience="dev-cli"
    )
    assert claims["nonce"] == "abc"


async def test_cli_rotate_is_picked_up_by_the_running_server(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    old = idp.active_kid
    result = run_idp("rotate", "--remove-old", "--data-dir", str(idp.data_dir))
    assert result.returncode == 0, result.stderr
    async with http.get(idp.jwks_uri) as resp:
        kids = [k["kid"] for k in (await resp.json(content_type=None))["keys"]]
    assert old not in kids
    assert len(kids) == 1
    assert kids[0] in result.stdout


def test_cli_token_for_an_unknown_user_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = run_idp("token", "mallory", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "unknown user 'mallory'" in result.stderr
    assert result.stdout == ""


def test_data_dir_defaults_to_the_environment_variable(tmp_path: Path) -> None:
    result = run_idp("token", "alice", cwd=tmp_path, env={"REGOGATE_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "idp" / "keys.json").is_file()
    assert not (tmp_path / ".regogate").exists()


def test_serve_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    result = run_idp("serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "refusing to bind" in result.stderr


async def test_start_server_refuses_a_non_loopback_host_before_binding(tmp_path: Path) -> None:
    with pytest.raises(NonLoopbackError):
        await start_server(tmp_path, host="0.0.0.0", port=0)
    assert not (tmp_path / "idp" / "state.json").exists()


async def test_serve_subprocess_prints_the_banner_and_records_its_issuer(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with idp_subprocess(tmp_path) as proc:
        result = run_idp("token", "carol", "--data-dir", str(tmp_path))
        claims = await verify_against_jwks(
            http, proc.jwks_uri, result.stdout.strip(), issuer=proc.issuer, audience="regogate"
        )
        assert claims["roles"] == ["admin"]
    assert "NOT FOR PRODUCTION" in proc.log_path.read_text()


async def test_token_uses_the_users_file_and_audience_the_server_was_started_with(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    users = tmp_path / "users.yaml"
    users.write_text("users:\n  zoe: {groups: [ml-team]}\nclients:\n  dev-cli: {secret: s}\n")
    data = tmp_path / "data"
    with idp_subprocess(data, users=users, extra_args=("--audience", "gw-test")) as proc:
        result = run_idp("token", "zoe", "--data-dir", str(data))
        assert result.returncode == 0, result.stderr
        claims = await verify_against_jwks(
            http, proc.jwks_uri, result.stdout.strip(), issuer=proc.issuer, audience="gw-test"
        )
        assert claims["sub"] == "zoe"
        proc.process.terminate()
        assert proc.process.wait(timeout=10) == 0


async def test_cli_opaque_token_comes_from_the_running_server_and_introspects_active(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with idp_subprocess(tmp_path) as proc:
        result = run_idp("token", "erin", "--opaque", "--data-dir", str(tmp_path))
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        assert token.count(".") == 0
        async with http.post(
            f"{proc.issuer}/introspect",
            data={"token": token},
            headers=basic("regogate-gateway", "regogate-gateway-secret"),
        ) as resp:
            body = await resp.json()
    assert body["active"] is True
    assert body["sub"] == "erin"


def test_cli_opaque_token_without_a_running_server_says_so(tmp_path: Path) -> None:
    result = run_idp(
        "token", "alice", "--opaque", "--issuer", "http://127.0.0.1:9", "--data-dir", str(tmp_path)
    )
    assert result.returncode == 2
    assert "python -m idp serve" in result.stderr


def test_cli_jwks_prints_public_keys_only(tmp_path: Path) -> None:
    result = run_idp("jwks", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    keys = json.loads(result.stdout)["keys"]
    assert len(keys) == 1
    assert "d" not in keys[0]
    assert keys[0]["use"] == "sig"


def test_cli_rotate_refuses_a_negative_grace(tmp_path: Path) -> None:
    result = run_idp("rotate", "--grace", "-5", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "zero or more" in result.stderr
