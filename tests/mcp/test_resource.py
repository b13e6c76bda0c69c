"""The gateway as the MCP clients' OAuth resource server: RFC 9728 metadata, the 401
challenge naming it, and the RFC 8707 audience rule (only tokens for our MCP resource)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from idp.testing import RunningIdp, running_idp
from pep import appkeys
from pep.mcp.auth_settings import McpResourceSettings
from pep.mcp.resource import authenticate_mcp
from tests.logscan import register
from tests.mcp.authgw import McpGateway, mcp_gateway


async def whoami(request: web.Request) -> web.Response:
    principal = await authenticate_mcp(request)
    return web.json_response({"sub": principal.sub, "server": request.match_info["server"]})


def add_probe(app: web.Application) -> None:
    # Stands in for the proxy's /mcp/{server} route: authenticate, then answer who called.
    app.router.add_post("/mcp/{server}", whoami)


@pytest.fixture
async def idp(tmp_path: Path) -> AsyncIterator[RunningIdp]:
    async with running_idp(tmp_path / "idp") as server:
        yield server


@pytest.fixture
async def gw(tmp_path: Path, idp: RunningIdp) -> AsyncIterator[McpGateway]:
    async with mcp_gateway(tmp_path, idp, add_probe, servers=("demo", "files"),
                           resource_extra={"scopes_supported": ("mcp",)}) as gateway:
        yield gateway


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, gw: McpGateway, token: str | None,
               server: str = "demo", **headers: str) -> tuple[int, dict[str, Any], Any]:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(f"{gw.url}/mcp/{server}", json={"jsonrpc": "2.0", "id": 1,
                                                          "method": "ping"},
                         headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_metadata_names_the_resource_the_trusted_issuer_and_header_bearer(
    gw: McpGateway, idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    for path in ("", "/mcp", "/mcp/demo", "/mcp/files"):
        async with http.get(f"{gw.url}/.well-known/oauth-protected-resource{path}") as resp:
            assert resp.status == 200, path
            assert "max-age=300" in resp.headers["Cache-Control"]
            doc = await resp.json()
        assert doc["resource"] == f"{gw.url}/mcp"
        assert doc["authorization_servers"] == [idp.issuer]
        assert doc["bearer_methods_supported"] == ["header"]
        assert doc["scopes_supported"] == ["mcp"]


async def test_metadata_for_an_unconfigured_server_is_404(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gw.url}/.well-known/oauth-protected-resource/mcp/nope") as resp:
        assert resp.status == 404


async def test_no_token_is_401_with_a_bare_challenge_naming_the_metadata(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await post(http, gw, None)
    assert status == 401
    challenge = headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert (f'resource_metadata="{gw.url}/.well-known/oauth-protected-resource/mcp/demo"'
            in challenge)
    assert "error=" not in challenge  # RFC 6750 3.1: no error code without credentials
    assert body["error"]["data"]["code"] == "missing_token"


async def test_a_token_for_the_gateway_mcp_resource_is_accepted(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    status, body, _ = await post(http, gw, gw.token("alice"), "files")
    assert (status, body) == (200, {"sub": "alice", "server": "files"})


async def test_a_token_for_the_model_api_audience_is_refused_invalid_token(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    token = gw.idp.token("alice")  # aud = "regogate": fine for /v1, not for MCP
    status, body, headers = await post(http, gw, token)
    assert status == 401
    assert body["error"]["data"]["code"] == "invalid_audience"
    challenge = headers["WWW-Authenticate"]
    assert 'error="invalid_token"' in challenge and "resource_metadata=" in challenge
    assert token not in challenge


async def test_a_token_for_another_resource_server_is_refused(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    for aud in ("https://other.example/mcp", f"{gw.url}/mcp/demo", f"{gw.url}/mc"):
        status, body, _ = await post(http, gw, gw.token("alice", audience=aud))
        assert (status, body["error"]["data"]["code"]) == (401, "invalid_audience"), aud


async def test_a_token_carrying_the_resource_among_several_audiences_is_accepted(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    token = gw.token("bob", audience=["regogate", gw.resource])
    status, body, _ = await post(http, gw, token)
    assert (status, body["sub"]) == (200, "bob")


async def test_an_mcp_token_is_not_accepted_by_the_model_api_even_after_mcp_cached_it(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    token = gw.token("alice")
    assert (await post(http, gw, token))[0] == 200
    async with http.get(f"{gw.url}/v1/models",
                        headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 401
    # ...and a model-API token verified there first is still refused here.
    model_token = gw.idp.token("alice")
    async with http.get(f"{gw.url}/v1/models",
                        headers={"Authorization": f"Bearer {model_token}"}) as resp:
        assert resp.status == 200
    assert (await post(http, gw, model_token))[0] == 401


async def test_x_api_key_is_not_a_credential_on_mcp_paths(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await post(http, gw, None, **{"x-api-key": gw.token("alice")})
    assert status == 401 and body["error"]["data"]["code"] == "missing_token"
    assert "resource_metadata=" in headers["WWW-Authenticate"]


async def test_a_malformed_authorization_header_is_400_with_the_metadata_challenge(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    status, _, headers = await post(http, gw, None, Authorization="Bearer a b c")
    assert status == 400
    assert 'error="invalid_request"' in headers["WWW-Authenticate"]
    assert "resource_metadata=" in headers["WWW-Authenticate"]


async def test_expired_and_id_tokens_are_refused(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    expired = gw.token("alice", ttl_s=-120)
    assert (await post(http, gw, expired))[1]["error"]["data"]["code"] == "token_expired"
    id_token = gw.idp.id_token("alice")
    assert (await post(http, gw, id_token))[0] == 401


async def test_every_refusal_is_an_auth_failure_record_without_token_bytes(
    gw: McpGateway, http: aiohttp.ClientSession
) -> None:
    token = gw.idp.token("alice")
    await post(http, gw, token)
    await post(http, gw, None)
    from pep.audit.factory import store_url
    from pep.audit.reader import open_reader

    settings = gw.app[appkeys.SETTINGS]
    reader = open_reader(store_url(settings.audit, settings.server.data_dir))
    try:
        records = [r.doc() async for r in reader.records()]
    finally:
        await reader.close()
    failures = [r for r in records if r["event"] == "auth.failure"]
    assert sorted(f["extra"]["code"] for f in failures) == ["invalid_audience", "missing_token"]
    assert all(f["outcome"]["status"] == 401 for f in failures)
    assert token not in str(records)


def test_resource_settings_refuse_fragments_queries_and_remote_plain_http() -> None:
    for bad in ("https://gw.example/mcp#x", "https://gw.example/mcp?a=1",
                "http://gw.example/mcp", "/mcp", "https://user:pw@gw.example/mcp"):
        with pytest.raises(ValueError):
            McpResourceSettings(resource=bad)
    assert McpResourceSettings(resource="http://127.0.0.1:8080/mcp").origin == (
        "http://127.0.0.1:8080")


async def test_authorization_servers_must_be_configured_issuers(
    tmp_path: Path, idp: RunningIdp
) -> None:
    with pytest.raises(ValueError, match="not identity.issuers"):
        async with mcp_gateway(tmp_path, idp, resource_extra={
                "authorization_servers": ("https://elsewhere.example",)}):
            pass


async def test_opaque_tokens_are_introspected_and_must_name_the_mcp_resource_too(
    tmp_path: Path, idp: RunningIdp, http: aiohttp.ClientSession
) -> None:
    introspection = {"client_id": "regogate-gateway",
                     "client_secret": idp.client_secret("regogate-gateway")}
    config = {"identity": {"issuers": [{"issuer": idp.issuer, "audiences": ["regogate"],
                                        "required_typ": "at+jwt",
                                        "introspection": introspection}]}}
    async with mcp_gateway(tmp_path, idp, add_probe, config=config) as gw:
        ours = idp.opaque_token("carol", audience=gw.resource)
        theirs = idp.opaque_token("carol")  # aud = regogate: for the model API
        register(ours, theirs)
        status, body, _ = await post(http, gw, ours)
        assert (status, body["sub"]) == (200, "carol")
        status, body, headers = await post(http, gw, theirs)
        assert (status, body["error"]["data"]["code"]) == (401, "invalid_audience")
        assert "resource_metadata=" in headers["WWW-Authenticate"]
