"""Fixtures: session-wide keys, a started fake IdP, and an Authenticator factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from pep.auth import Authenticator
from pep.auth.settings import IdentitySettings
from pep.errors import GatewayError
from tests.auth.fakeidp import FakeIdp, SigningKey, ec_key, ed_key, rsa_key, serve


@pytest.fixture(scope="session")
def rsa_keys() -> list[SigningKey]:
    # RSA generation is the slow part of this suite: make a few once.
    return [rsa_key("rsa-1"), rsa_key("rsa-2"), rsa_key("attacker")]


@pytest.fixture(scope="session")
def ec_signing_key() -> SigningKey:
    return ec_key("ec-1")


@pytest.fixture(scope="session")
def ed_signing_key() -> SigningKey:
    return ed_key("ed-1")


@pytest.fixture
async def idp(rsa_keys: list[SigningKey]) -> AsyncIterator[FakeIdp]:
    fake = FakeIdp(keys=[rsa_keys[0]])
    runner, url = await serve(fake.app())
    fake.issuer = url
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def identity(issuers: list[dict[str, Any]], **extra: Any) -> IdentitySettings:
    return IdentitySettings.model_validate({"issuers": issuers, **extra})


def issuer_conf(idp: FakeIdp, **extra: Any) -> dict[str, Any]:
    return {"issuer": idp.issuer, "audiences": ["regogate"], **extra}


MakeAuth = Callable[..., Awaitable[Authenticator]]


@pytest.fixture
async def make_auth(
    idp: FakeIdp, session: aiohttp.ClientSession
) -> AsyncIterator[MakeAuth]:
    """make_auth(issuer={...overrides}, **identity_overrides) -> started Authenticator."""
    started: list[Authenticator] = []

    async def make(issuer: dict[str, Any] | None = None, issuers: list[dict[str, Any]] | None = None,
                   **extra: Any) -> Authenticator:
        confs = issuers if issuers is not None else [issuer_conf(idp, **(issuer or {}))]
        auth = Authenticator(identity(confs, **extra), session)
        await auth.start()
        started.append(auth)
        return auth

    yield make
    for auth in started:
        await auth.close()


@pytest.fixture
async def auth(make_auth: MakeAuth) -> Authenticator:
    return await make_auth()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def rejected(auth: Authenticator, token_or_headers: str | dict[str, str]) -> GatewayError:
    """Authenticate, expect a GatewayError, return it."""
    headers = bearer(token_or_headers) if isinstance(token_or_headers, str) else token_or_headers
    with pytest.raises(GatewayError) as info:
        await auth.authenticate(headers)
    return info.value
