"""Fixtures: a real dev IdP on 127.0.0.1 per test, and PyJWT-based verification helpers."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from idp.testing import RunningIdp, running_idp


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def header_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


async def verify_against_jwks(
    http: aiohttp.ClientSession, jwks_uri: str, token: str, *, issuer: str, audience: str
) -> dict[str, Any]:
    """Verify like an independent relying party would: fetch the served JWKS, pick by kid."""
    async with http.get(jwks_uri) as resp:
        assert resp.status == 200
        keyset = jwt.PyJWKSet.from_dict(await resp.json())
    kid = header_of(token)["kid"]
    key = next(k for k in keyset.keys if k.key_id == kid)
    return dict(
        jwt.decode(
            token,
            key.key,
            algorithms=["RS256", "PS256", "ES256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    )
