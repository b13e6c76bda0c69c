"""The workspace signs in against an independent, OpenID-certified provider (panva/oidc-provider,
tests/auth/interop/server.mjs, its development login and consent screens): the relying party
speaks plain OIDC (discovery, code + PKCE S256, client_secret_basic, RFC 9207 iss), not just
our dev IdP's dialect. Skipped without ``npm ci --prefix tests/auth/interop``; a failure
under REGOGATE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from tests.audit.workspace import WorkspaceClient, workspace_http
from tests.auth.test_interop import provider  # noqa: F401 - the module-scoped fixture
from tests.harness import running_gateway

_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.I)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.I)


async def _through_the_provider(ws: WorkspaceClient, start: str, login: str) -> str:
    """Follow the provider's redirects and post its login and consent forms until it sends
    the browser back to the gateway; returns that callback URL."""
    url = start
    for _ in range(12):
        if url.startswith(f"{ws.base_url}/audit/callback"):
            return url
        res = await ws.get(url)
        if res.status in (302, 303):
            assert res.location is not None
            url = urljoin(url, res.location)
            continue
        assert res.status == 200, res.text[:500]
        action = _FORM.search(res.text)
        assert action is not None, res.text[:500]
        data: dict[str, Any] = dict(_HIDDEN.findall(res.text))
        if 'name="login"' in res.text:
            data.update(login=login, password="any")
        async with ws.http.post(urljoin(url, action.group(1)), data=data,
                                allow_redirects=False) as resp:
            assert resp.status in (302, 303), await resp.text()
            url = urljoin(url, resp.headers["Location"])
    raise AssertionError("the provider never redirected back")


def _config(issuer: str) -> dict[str, Any]:
    return {
        "identity": {"issuers": [{"issuer": issuer, "audiences": ["regogate"],
                                  "required_typ": "at+jwt"}]},
        "workspace": {"client_id": "regogate-workspace", "client_secret": "workspace-secret",
                      "issuer": issuer, "issuer_name": "oidc-provider"},
    }


async def test_an_auditor_signs_in_with_an_independent_provider(
    tmp_path: Path, provider: str  # noqa: F811
) -> None:
    async with running_gateway(tmp_path, config=_config(provider)) as gw, \
            workspace_http(gw.url) as ws:
        callback = await _through_the_provider(ws, await ws.start(), "erin")
        assert f"iss={provider}".replace(":", "%3A").replace("/", "%2F") in callback
        res = await ws.get(callback)
        assert res.status == 303, res.text
        state = await ws.session()
        assert state["signed_in"] and state["user"]["subject"] == "erin"
        assert state["issuer_name"] == "oidc-provider"
        status, doc = await ws.get_json("/audit/v1/events")
        assert status == 200
        assert doc["data"][0]["who"]["issuer"] == provider
        assert doc["data"][0]["who"]["groups"] == ["auditors"]


async def test_a_non_auditor_of_an_independent_provider_is_refused(
    tmp_path: Path, provider: str  # noqa: F811
) -> None:
    async with running_gateway(tmp_path, config=_config(provider)) as gw, \
            workspace_http(gw.url) as ws:
        res = await ws.get(await _through_the_provider(ws, await ws.start(), "alice"))
        assert res.status == 403 and "Alice Anders" in res.text
        assert ws.session_cookie() is None
