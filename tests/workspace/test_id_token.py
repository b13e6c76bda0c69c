"""ID token verification for the sign-in (pep.auth: same parsing, keys and pins as access
tokens; audience = our client, our nonce, never an access token)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pep import appkeys
from pep.errors import Unauthorized
from tests.harness import Gateway, running_gateway

CLIENT = "regogate-workspace"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path) as gw:
        yield gw


async def _verify(gw: Gateway, token: str, *, nonce: str = "n-1", client: str = CLIENT,
                  issuer: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = await gw.app[appkeys.AUTHENTICATOR].verify_id_token(
        token, issuer=issuer or gw.idp.issuer, client_id=client, nonce=nonce)
    return result


def _claims(gw: Gateway, **changes: Any) -> dict[str, Any]:
    claims = gw.idp.id_token_claims("erin", client=CLIENT, nonce="n-1")
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def test_an_id_token_for_our_client_with_our_nonce_is_accepted(gw: Gateway) -> None:
    claims = await _verify(gw, gw.idp.id_token("erin", client=CLIENT, nonce="n-1"))
    assert claims["sub"] == "erin" and claims["aud"] == CLIENT


async def _refused(gw: Gateway, token: str, code: str, **kw: Any) -> None:
    with pytest.raises(Unauthorized) as err:
        await _verify(gw, token, **kw)
    assert err.value.code == code


async def test_a_wrong_nonce_is_refused(gw: Gateway) -> None:
    await _refused(gw, gw.idp.id_token("erin", client=CLIENT, nonce="other"), "nonce_mismatch")
    await _refused(gw, gw.idp.sign(_claims(gw, nonce=None), typ="JWT"), "nonce_mismatch")


async def test_an_id_token_for_another_client_is_refused(gw: Gateway) -> None:
    await _refused(gw, gw.idp.id_token("erin", client="dev-cli", nonce="n-1"),
                   "invalid_audience")
    # Several audiences: azp must name us.
    token = gw.idp.sign(_claims(gw, aud=[CLIENT, "dev-cli"], azp="dev-cli"), typ="JWT")
    await _refused(gw, token, "invalid_id_token")


async def test_an_access_token_is_not_an_id_token(gw: Gateway) -> None:
    await _refused(gw, gw.idp.token("erin", client=CLIENT), "invalid_id_token")


async def test_an_id_token_of_another_issuer_is_refused(gw: Gateway) -> None:
    token = gw.idp.id_token("erin", client=CLIENT, nonce="n-1")
    await _refused(gw, token, "untrusted_issuer", issuer="https://other.example")


async def test_an_expired_id_token_is_refused(gw: Gateway) -> None:
    now = int(time.time())
    token = gw.idp.sign(_claims(gw, iat=now - 7200, nbf=now - 7200, exp=now - 3600), typ="JWT")
    await _refused(gw, token, "token_expired")


async def test_an_id_token_without_a_subject_is_refused(gw: Gateway) -> None:
    await _refused(gw, gw.idp.sign(_claims(gw, sub=""), typ="JWT"), "invalid_id_token")


async def test_a_malformed_or_huge_id_token_is_refused(gw: Gateway) -> None:
    await _refused(gw, "not.a.jwt", "invalid_token")
    await _refused(gw, "x" * 10_000, "token_too_large")
