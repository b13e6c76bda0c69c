"""The MCP authorization flow end to end with the official ``mcp`` SDK as the client: its
OAuth support finds the gateway's Protected Resource Metadata from the 401, gets a token for
the gateway's resource from the dev IdP (authorization code + PKCE; client credentials), and
connects through /mcp/{server} to an upstream built with the SDK. A token for another
audience is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from idp.testing import RunningIdp, running_idp
from tests.mcp.authgw import McpGateway, claims_of, full_gateway
from tests.mcp.conftest import mcp_client
from tests.mcp.servers import Upstream, tools_server

REDIRECT = "http://127.0.0.1:38181/callback"  # never served: the "browser" stops at it


class MemoryStorage:
    """The SDK's TokenStorage, in memory, pre-registered as the dev IdP's ``dev-cli``."""

    def __init__(self, client_info: Any) -> None:
        self.tokens: Any = None
        self.client_info = client_info

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, client_info: Any) -> None:
        self.client_info = client_info


class DevBrowser:
    """Plays the user's browser: opens the authorization URL with ``login_hint`` (the dev
    IdP's password-less login) and reads the redirect back to the client."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.opened: list[str] = []
        self.result: dict[str, str] = {}

    async def redirect(self, url: str) -> None:
        self.opened.append(url)
        async with aiohttp.ClientSession() as http:
            async with http.get(url, params={"login_hint": self.user},
                                allow_redirects=False) as resp:
                assert resp.status == 302, await resp.text()
                location = resp.headers["Location"]
        assert location.startswith(REDIRECT)
        self.result = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    async def callback(self) -> Any:
        from mcp.shared.auth import AuthorizationCodeResult

        return AuthorizationCodeResult(code=self.result["code"], state=self.result.get("state"),
                                       iss=self.result.get("iss"))


@asynccontextmanager
async def oauth_session(url: str, auth: Any) -> AsyncIterator[Any]:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(auth=auth) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def code_flow(server_url: str, user: str) -> tuple[Any, DevBrowser, MemoryStorage]:
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata

    browser = DevBrowser(user)
    storage = MemoryStorage(OAuthClientInformationFull(
        client_id="dev-cli", client_secret="dev-cli-secret", redirect_uris=[REDIRECT],
        grant_types=["authorization_code"], token_endpoint_auth_method="client_secret_basic"))
    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(redirect_uris=[REDIRECT],
                                            grant_types=["authorization_code"],
                                            token_endpoint_auth_method="client_secret_basic"),
        storage=storage, redirect_handler=browser.redirect, callback_handler=browser.callback)
    return provider, browser, storage


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path / "idp") as server:
        yield server


@pytest.fixture
async def gw(tmp_path: Path, idp: RunningIdp, upstream: Upstream) -> AsyncIterator[McpGateway]:
    async with full_gateway(tmp_path, idp, {"tools": {"url": upstream.url, "timeout_s": 10}},
                            catalog={}) as gateway:
        yield gateway


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with tools_server() as up:
        yield up


async def test_the_sdk_discovers_the_metadata_gets_a_token_for_the_resource_and_connects(
    gw: McpGateway, idp: RunningIdp, upstream: Upstream
) -> None:
    provider, browser, storage = code_flow(f"{gw.url}/mcp/tools", "alice")
    async with oauth_session(f"{gw.url}/mcp/tools", provider) as session:
        names = {t.name for t in (await session.list_tools()).tools}
        result = await session.call_tool("search", {"query": "oauth"})
    assert "search" in names and "shell" not in names  # alice's policy, not carol's
    assert result.content[0].text == "3 documents match 'oauth'"
    # The SDK followed the 401 to our metadata and asked the dev IdP for our resource.
    (opened,) = browser.opened
    query = parse_qs(urlsplit(opened).query)
    assert opened.startswith(f"{idp.issuer}/authorize?")
    assert query["resource"] == [gw.resource]
    assert query["code_challenge_method"] == ["S256"]
    token = storage.tokens.access_token
    claims = claims_of(token)
    assert claims["sub"] == "alice" and claims["aud"] == gw.resource
    # ...and that token stayed with the gateway.
    assert upstream.headers and not upstream.saw(token)
    assert not any("authorization" in {k.lower() for k in h} for h in upstream.headers)


async def test_the_sdk_client_credentials_flow_gets_a_service_token_for_the_resource(
    gw: McpGateway, idp: RunningIdp
) -> None:
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider

    storage = MemoryStorage(None)
    provider = ClientCredentialsOAuthProvider(
        server_url=f"{gw.url}/mcp/tools", storage=storage, client_id="batch-service",
        client_secret="batch-service-secret", issuer=idp.issuer)
    async with oauth_session(f"{gw.url}/mcp/tools", provider) as session:
        await session.list_tools()
    claims = claims_of(storage.tokens.access_token)
    assert claims["sub"] == "batch-service" and claims["aud"] == gw.resource


async def test_a_token_for_another_audience_is_refused_with_the_metadata_challenge(
    gw: McpGateway, idp: RunningIdp, upstream: Upstream
) -> None:
    for token in (idp.token("alice"), idp.token("alice", audience="https://other.example/mcp")):
        with pytest.raises(BaseException) as refused:
            async with mcp_client(f"{gw.url}/mcp/tools", token) as session:
                await session.list_tools()
        assert "401" in repr(refused.value) or "Unauthorized" in repr(refused.value)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gw.url}/mcp/tools", json={"jsonrpc": "2.0", "id": 1,
                                                           "method": "initialize", "params": {}},
                             headers={"Authorization": f"Bearer {idp.token('alice')}",
                                      "Accept": "application/json, text/event-stream"}) as resp:
            assert resp.status == 401
            challenge = resp.headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge
    assert (f'resource_metadata="{gw.url}/.well-known/oauth-protected-resource/mcp/tools"'
            in challenge)
    assert not upstream.calls


async def test_a_token_for_the_resource_from_the_dev_idp_cli_path_connects(
    gw: McpGateway
) -> None:
    async with mcp_client(f"{gw.url}/mcp/tools", gw.token("bob")) as session:
        names = {t.name for t in (await session.list_tools()).tools}
    assert "search" in names and "write_file" not in names
