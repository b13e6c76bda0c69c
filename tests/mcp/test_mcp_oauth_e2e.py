"""The MCP authorization flow through the proxy: a client discovers the gateway's Protected
Resource Metadata from the 401, gets a token for the gateway's MCP resource from the dev IdP
(RFC 8707 ``resource``), and connects with the official SDK; a token for another audience
(the model API's) is refused. The upstream never sees either token."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import aiohttp

from tests.mcp.conftest import mcp_client, mcp_gateway
from tests.mcp.raw import INIT
from tests.mcp.servers import Upstream


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_client_discovers_metadata_gets_a_resource_token_and_connects(
        tmp_path: Path, upstream: Upstream) -> None:
    port = _free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    async with mcp_gateway(tmp_path, upstream, port=port,
                           mcp={"resource": {"resource": resource}}) as gw:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{gw.url}/mcp/tools", json=INIT) as resp:
                assert resp.status == 401
                challenge = resp.headers["WWW-Authenticate"]
            found = re.search(r'resource_metadata="([^"]+)"', challenge)
            assert found is not None, challenge
            async with http.get(found.group(1)) as resp:
                metadata = await resp.json()
            assert metadata["resource"] == resource
            (issuer,) = metadata["authorization_servers"]
            async with http.get(f"{issuer}/.well-known/openid-configuration") as resp:
                token_endpoint = (await resp.json())["token_endpoint"]
            form = {"grant_type": "urn:regogate:dev:user", "username": "alice",
                    "resource": metadata["resource"]}
            basic = aiohttp.encode_basic_auth("dev-cli", "dev-cli-secret")
            async with http.post(token_endpoint, data=form,
                                 headers={"Authorization": basic}) as resp:
                assert resp.status == 200, await resp.text()
                token = (await resp.json())["access_token"]
            # A token for the model API (audience "regogate") is not one for MCP.
            model_token = gw.token("alice")
            async with http.post(f"{gw.url}/mcp/tools", json=INIT,
                                 headers={"Authorization": f"Bearer {model_token}",
                                          "Accept": "application/json, text/event-stream"}
                                 ) as resp:
                assert resp.status == 401
                assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
                assert (await resp.json())["error"]["code"] == -32001
        async with mcp_client(f"{gw.url}/mcp/tools", token) as session:
            result = await session.call_tool("search", {"query": "with a resource token"})
    assert result.content[0].text == "3 documents match 'with a resource token'"
    assert not upstream.saw(token) and not upstream.saw(model_token)
