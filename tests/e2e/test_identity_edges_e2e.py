"""Identity at the edges, through the running gateway: a broken JWKS never locks users out,
a rotated key verifies on first sight, token lifetimes are bounded, and every 401/400
carries the RFC 6750 section 3.1 challenge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pep import appkeys
from tests.auth.fakeidp import FakeIdp, rsa_key, serve
from tests.e2e.conftest import upstream_config
from tests.fakes.server import FakeServer
from tests.harness import Gateway, deep_merge, running_gateway

ASK = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def fake_idp() -> AsyncIterator[FakeIdp]:
    fake = FakeIdp(keys=[rsa_key("k-1")])
    runner, url = await serve(fake.app())
    fake.issuer = url
    try:
        yield fake
    finally:
        await runner.cleanup()


def trusting(fake: FakeIdp, upstream: FakeServer, **issuer: Any) -> dict[str, Any]:
    return deep_merge(upstream_config(upstream), {"identity": {"issuers": [{
        "issuer": fake.issuer, "audiences": ["regogate"], "algorithms": ["RS256"],
        "required_typ": "at+jwt", **issuer}]}})


async def post(gw: Gateway, headers: dict[str, str], path: str = "/v1/chat/completions"
               ) -> tuple[int, dict[str, Any], Any]:
    async with aiohttp.ClientSession() as s, s.post(
            gw.url + path, json={"model": "mock-gpt", "max_tokens": 5, "messages": ASK},
            headers=headers) as r:
        return r.status, await r.json(), r.headers


async def metrics(gw: Gateway) -> str:
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
        return await r.text()


async def test_broken_jwks_keeps_the_last_good_keys_and_is_counted(
    tmp_path: Path, upstream: FakeServer, fake_idp: FakeIdp
) -> None:
    async with running_gateway(tmp_path, config=trusting(fake_idp, upstream)) as gw:
        good = fake_idp.keys[:]
        fake_idp.keys.clear()
        fake_idp.extra_jwks = [{"kty": "RSA", "kid": "k-1", "n": "!!", "e": "AQAB"}]
        keys = gw.component(appkeys.AUTHENTICATOR).issuer_keys(fake_idp.issuer)
        assert await keys.refresh() is False  # what the background refresh would do
        out = await gw.openai(token=fake_idp.token(good[0])).chat.completions.create(
            model="mock-gpt", messages=ASK)
        text = await metrics(gw)
        events = await gw.audit_records()
    assert out.choices[0].message.content == "Hello from the fake upstream."
    assert [e["event"] for e in events] == ["request.intent", "request.completion"]
    assert events[0]["who"]["subject"] == "alice" and events[0]["who"]["issuer"] == fake_idp.issuer
    assert (f'regogate_jwks_refresh_failures_total{{cause="no_usable_keys",'
            f'issuer="{fake_idp.issuer}"}} 1') in text
    assert f'regogate_jwks_keys{{issuer="{fake_idp.issuer}"}} 1' in text
    assert len(upstream.requests) == 1


async def test_rotated_key_verifies_on_the_first_request(tmp_path: Path) -> None:
    # Default jwks_min_refresh_interval_s (10 s): the start-up fetch has just happened, and
    # the first token signed with the new key must still verify at once.
    async with running_gateway(tmp_path) as gw:
        gw.idp.rotate(remove_old=True)
        out = await gw.openai(token=gw.idp.token("alice")).chat.completions.create(
            model="mock-gpt", messages=ASK)
    assert out.choices[0].message.content


async def test_token_minted_to_live_for_centuries_is_refused_and_audited(
    tmp_path: Path, upstream: FakeServer, fake_idp: FakeIdp
) -> None:
    config = trusting(fake_idp, upstream, max_token_lifetime_s=3600)
    async with running_gateway(tmp_path, config=config) as gw:
        long_lived = fake_idp.token(exp=9_999_999_999)  # year 2286
        status, doc, headers = await post(gw, {"Authorization": f"Bearer {long_lived}"})
        ok = await gw.openai(token=fake_idp.token()).chat.completions.create(
            model="mock-gpt", messages=ASK)
        events = await gw.audit_records()
    assert status == 401 and doc["error"]["code"] == "token_lifetime_exceeded"
    assert doc["error"]["type"] == "authentication_error"
    assert headers["WWW-Authenticate"].startswith('Bearer realm="regogate", error="invalid_token"')
    assert ok.choices[0].message.content
    assert len(upstream.requests) == 1  # only the acceptable token's request was forwarded
    failure = next(e for e in events if e["event"] == "auth.failure")
    assert failure["outcome"]["status"] == 401
    assert failure["outcome"]["error_code"] == "token_lifetime_exceeded"


@pytest.mark.parametrize(("headers", "status", "error"), [
    ({}, 401, None),
    ({"Authorization": "Basic dXNlcjpwdw=="}, 401, None),
    ({"Authorization": "Bearer not-a-jwt.x"}, 401, "invalid_token"),
    ({"Authorization": "Bearer a b"}, 400, "invalid_request"),
    ({"Authorization": "Bearer aaa", "x-api-key": "bbb"}, 400, "invalid_request"),
], ids=["no token", "other scheme", "bad token", "malformed header", "two credentials"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_refusals_carry_the_rfc_6750_challenge(
    tmp_path: Path, upstream: FakeServer, headers: dict[str, str], status: int,
    error: str | None, path: str
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        got, doc, resp_headers = await post(gw, headers, path)
        events = await gw.audit_records()
    assert got == status, doc
    challenge = resp_headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="regogate"')
    if error is None:  # RFC 6750 3.1: no credentials -> no error information at all
        assert "error" not in challenge
    else:
        assert f'error="{error}"' in challenge
    assert upstream.requests == []
    assert [e["event"] for e in events] == ["auth.failure"]


async def test_policy_denial_for_missing_scope_is_an_insufficient_scope_challenge(
    tmp_path: Path, upstream: FakeServer
) -> None:
    from tests.e2e.conftest import write_bundle

    rego = ('package regogate\n\nimport rego.v1\n\n'
            'decision := {"allow": false, "reasons": [{"code": "insufficient_scope", '
            '"message": "needs scope llm:chat"}]}\n')
    config = deep_merge(upstream_config(upstream),
                        {"policy": {"bundle": str(write_bundle(tmp_path / "b", rego))}})
    async with running_gateway(tmp_path, config=config) as gw:
        status, doc, headers = await post(gw, {"Authorization": f"Bearer {gw.token('alice')}"})
        events = await gw.audit_records()
    assert status == 403 and doc["error"]["code"] == "insufficient_scope"
    assert headers["WWW-Authenticate"] == ('Bearer realm="regogate", error="insufficient_scope", '
                                           'error_description="needs scope llm:chat"')
    assert upstream.requests == []
    assert [e["event"] for e in events] == ["policy.deny"]
