"""Signing keys: persistence, permissions, rotation picked up by a running server."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from idp.keys import KeyFileError, KeyRing
from idp.testing import RunningIdp, running_idp
from tests.idp.conftest import header_of, verify_against_jwks


async def _served_kids(http: aiohttp.ClientSession, idp: RunningIdp) -> list[str]:
    async with http.get(idp.jwks_uri) as resp:
        return [k["kid"] for k in (await resp.json(content_type=None))["keys"]]


def test_first_use_creates_a_private_key_file_readable_only_by_its_owner(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    ring.snapshot()
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600
    assert "d" in json.loads(ring.path.read_text())["keys"][0]["jwk"]


def test_keys_persist_across_key_ring_instances(tmp_path: Path) -> None:
    first = KeyRing(tmp_path).snapshot().active.kid
    assert KeyRing(tmp_path).snapshot().active.kid == first


def test_es256_keys_are_available(tmp_path: Path) -> None:
    key = KeyRing(tmp_path, alg="ES256").snapshot().active
    assert key.alg == "ES256"
    assert key.as_dict(private=False)["crv"] == "P-256"


def test_unsupported_algorithm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        KeyRing(tmp_path, alg="HS256")


def test_malformed_key_file_is_an_error_not_a_silent_new_key(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    ring.path.write_text("{not json")
    with pytest.raises(KeyFileError, match="malformed"):
        ring.snapshot()
    assert ring.path.read_text() == "{not json"


async def test_rotation_is_served_without_restart_and_keeps_the_old_key(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    old_kid = idp.active_kid
    old_token = idp.token("alice")
    # A separate KeyRing, as `python -m idp rotate` in another process would use.
    new_kid = KeyRing(idp.data_dir).rotate()
    assert new_kid != old_kid
    assert await _served_kids(http, idp) == [new_kid, old_kid]
    new_token = idp.token("alice")
    assert header_of(new_token)["kid"] == new_kid
    for token in (old_token, new_token):
        claims = await verify_against_jwks(
            http, idp.jwks_uri, token, issuer=idp.issuer, audience="regogate"
        )
        assert claims["sub"] == "alice"


async def test_rotation_with_remove_old_publishes_only_the_new_key(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    idp.rotate()
    newest = idp.rotate(remove_old=True)
    assert await _served_kids(http, idp) == [newest]


async def test_a_second_rotation_keeps_previous_keys_still_in_their_grace(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    first = idp.active_kid
    second = idp.rotate()
    third = idp.rotate()
    assert await _served_kids(http, idp) == [third, second, first]


async def test_a_key_past_its_grace_period_is_no_longer_published(
    idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    old = idp.active_kid
    new = idp.rotate(grace_s=1)
    assert old in await _served_kids(http, idp)
    deadline = time.monotonic() + 5
    while old in await _served_kids(http, idp):
        assert time.monotonic() < deadline, "old key still published after its grace period"
        await asyncio.sleep(0.2)
    assert await _served_kids(http, idp) == [new]


async def test_rotation_can_switch_algorithm(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with running_idp(tmp_path) as idp:
        idp.rotate(alg="ES256")
        token = idp.token("bob")
        assert header_of(token)["alg"] == "ES256"
        claims = await verify_against_jwks(
            http, idp.jwks_uri, token, issuer=idp.issuer, audience="regogate"
        )
        assert claims["sub"] == "bob"


def test_a_key_file_readable_by_others_is_tightened_to_0600(tmp_path: Path) -> None:
    ring = KeyRing(tmp_path)
    ring.snapshot()
    ring.path.chmod(0o644)
    KeyRing(tmp_path).snapshot()
    assert stat.S_IMODE(ring.path.stat().st_mode) == 0o600


def test_concurrent_first_use_creates_exactly_one_key(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        kids = set(pool.map(lambda _: KeyRing(tmp_path).snapshot().active.kid, range(4)))
    assert len(kids) == 1
    assert len(json.loads(KeyRing(tmp_path).path.read_text())["keys"]) == 1
