"""The identity layer against the project's own dev IdP (idp/), over real HTTP on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from idp.testing import RunningIdp, running_idp
from pep.auth import Authenticator
from pep.errors import GatewayError
from tests.auth.conftest import bearer, identity


@pytest.fixture
async def dev_idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path / "idp") as started:
        yield started


@pytest.fixture
async def dev_auth(dev_idp: RunningIdp) -> AsyncIterator[Authenticator]:
    conf = {
        "issuer": dev_idp.issuer,
        "audiences": ["regogate"],
        "required_typ": "at+jwt",
        "introspection": {
            "client_id": "regogate-gateway",
            "client_secret": dev_idp.client_secret("regogate-gateway"),
        },
    }
    async with aiohttp.ClientSession() as session:
        auth = Authenticator(identity([conf], jwks_min_refresh_interval_s=0), session)
        await auth.start()
        try:
            yield auth
        finally:
            await auth.close()


async def test_dev_idp_user_token_is_accepted_with_claims_mapped(dev_auth: Authenticator, dev_idp: RunningIdp) -> None:
    p = await dev_auth.authenticate(bearer(dev_idp.token("alice")))
    assert (p.sub, p.email, p.kind, p.groups, p.teams, p.client_id) == (
        "alice", "alice@example.com", "user", ("ml-team",), ("research",), "dev-cli"
    )


async def test_dev_idp_service_token_is_a_service_principal(dev_auth: Authenticator, dev_idp: RunningIdp) -> None:
    p = await dev_auth.authenticate(bearer(dev_idp.service_token("batch-service")))
    assert (p.kind, p.client_id, p.roles) == ("service", "batch-service", ("batch",))


async def test_dev_idp_id_token_is_refused(dev_auth: Authenticator, dev_idp: RunningIdp) -> None:
    with pytest.raises(GatewayError) as info:
        await dev_auth.authenticate(bearer(dev_idp.id_token("alice")))
    assert info.value.status == 401


async def test_dev_idp_opaque_token_is_introspected(dev_auth: Authenticator, dev_idp: RunningIdp) -> None:
    p = await dev_auth.authenticate({"x-api-key": dev_idp.opaque_token("bob")})
    assert (p.sub, p.teams) == ("bob", ("sales",))


async def test_dev_idp_rotation_is_picked_up_without_restart(dev_auth: Authenticator, dev_idp: RunningIdp) -> None:
    old = dev_idp.token("alice")
    await dev_auth.authenticate(bearer(old))
    dev_idp.rotate(remove_old=False)
    p = await dev_auth.authenticate(bearer(dev_idp.token("carol")))
    assert p.roles == ("admin",)
