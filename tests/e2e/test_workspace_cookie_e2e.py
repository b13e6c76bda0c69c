"""The model-calling API never honours the workspace cookie: with only the cookie it is 401;
with the cookie and a bearer token it is 400 ambiguous_credentials, recorded as
request.rejected. The cookie is a real session from a real sign-in."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import openai
import pytest

from tests.audit.workspace import workspace_http
from tests.harness import error_body, running_gateway

CHAT = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]}


async def test_the_api_ignores_the_workspace_cookie(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, workspace_http(gw.url) as ws:
        await ws.sign_in("erin")
        sid = ws.session_cookie()
        assert sid
        cookie = f"regogate_ws={sid}"

        # Official SDK, the cookie only (its Authorization header removed): 401.
        only_cookie = gw.openai("erin", default_headers={"Cookie": cookie})
        with pytest.raises(openai.AuthenticationError) as err:
            await only_cookie.chat.completions.create(
                **CHAT, extra_headers={"Authorization": openai.Omit()})
        assert err.value.status_code == 401
        assert error_body(err.value)["code"] == "missing_token"

        # Official SDK, cookie + the user's own valid bearer token: 400, never forwarded.
        both = gw.openai("erin", default_headers={"Cookie": cookie})
        with pytest.raises(openai.BadRequestError) as bad:
            await both.chat.completions.create(**CHAT)
        body = error_body(bad.value)
        assert body["code"] == "ambiguous_credentials" and body["type"] == "invalid_request_error"
        assert body["param"] == "cookie"
        with pytest.raises(openai.BadRequestError):
            await both.models.list()

        # Raw HTTP, the same two cases, plus the Anthropic-style x-api-key.
        async with aiohttp.ClientSession() as raw:
            url = f"{gw.url}/v1/chat/completions"
            async with raw.post(url, json=CHAT, headers={"Cookie": cookie}) as resp:
                assert resp.status == 401
            for cred in ({"Authorization": f"Bearer {gw.token('erin')}"},
                         {"x-api-key": gw.token("erin")}):
                async with raw.post(url, json=CHAT,
                                    headers={"Cookie": f"theme=dark; {cookie}", **cred}) as resp:
                    assert resp.status == 400
                    assert (await resp.json())["error"]["code"] == "ambiguous_credentials"
            # An unrelated cookie beside a bearer token is no reason to refuse.
            async with raw.post(url, json=CHAT, headers={
                    "Cookie": "theme=dark",
                    "Authorization": f"Bearer {gw.token('erin')}"}) as resp:
                assert resp.status == 200

        records = await gw.audit_records()
        rejected = [r for r in records if r["event"] == "request.rejected"]
        assert len(rejected) == 4
        assert {r["extra"]["reason"] for r in rejected} == {"ambiguous_credentials"}
        intents = [r for r in records if r["event"] == "request.intent"]
        assert len(intents) == 1  # only the plain bearer call was forwarded
