"""Interop: tokens minted by an independent, OpenID-certified provider (panva/oidc-provider,
run by node from tests/auth/interop/) are accepted with their claims mapped, and that
provider's ID tokens are refused. Needs ``npm ci --prefix tests/auth/interop``; skipped
without it, a failure under REGOGATE_REQUIRE_SERVICES=1."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from pep.auth import Authenticator
from pep.errors import GatewayError
from tests.auth.conftest import bearer, identity
from tests.conftest import services_required

INTEROP = Path(__file__).parent / "interop"
REDIRECT_URI = "http://127.0.0.1/cb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    node = shutil.which("node")
    if node is None or not (INTEROP / "node_modules" / "oidc-provider").is_dir():
        msg = "oidc-provider not installed: npm ci --prefix tests/auth/interop"
        if services_required():
            pytest.fail(msg)
        pytest.skip(msg)
    port = _free_port()
    proc = subprocess.Popen(
        [node, "server.mjs", str(port)], cwd=INTEROP,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until "ready <issuer>" (or EOF if it died)
        if not line.startswith("ready "):
            pytest.fail(f"oidc-provider did not start (exit {proc.poll()})")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def op_auth(provider: str) -> AsyncIterator[Authenticator]:
    conf = {
        "issuer": provider,
        "audiences": ["regogate"],
        "required_typ": "at+jwt",
        "claims": {"roles": "realm_access.roles"},
        "group_teams": {"ml-team": "research"},
    }
    async with aiohttp.ClientSession() as session:
        auth = Authenticator(identity([conf]), session)
        await auth.start()
        assert auth.ready()[0], auth.ready()[1]
        try:
            yield auth
        finally:
            await auth.close()


async def _client_credentials(issuer: str) -> str:
    form = {"grant_type": "client_credentials", "scope": "api:read", "resource": "urn:regogate:api"}
    basic = {"Authorization": aiohttp.encode_basic_auth("batch", "batch-secret")}
    async with aiohttp.ClientSession() as http, http.post(f"{issuer}/token", data=form, headers=basic) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


async def _authorization_code(issuer: str, user: str) -> dict[str, str]:
    """Drive the real authorization-code + PKCE flow through the dev login/consent screens."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urlencode({
        "client_id": "chat-ui", "response_type": "code", "redirect_uri": REDIRECT_URI,
        "scope": "openid email profile api:read", "resource": "urn:regogate:api",
        "code_challenge": challenge, "code_challenge_method": "S256", "state": "st", "nonce": "nn",
    })
    jar = aiohttp.CookieJar(unsafe=True)  # the issuer is an IP address
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        url = f"{issuer}/auth?{query}"
        for _ in range(12):
            async with http.get(url, allow_redirects=False) as resp:
                if resp.status in (302, 303):
                    url = resp.headers["Location"]
                    url = url if url.startswith("http") else issuer + url
                    if url.startswith(REDIRECT_URI):
                        break
                    continue
                page = await resp.text()
            action = re.search(r'action="([^"]+)"', page)
            prompt = re.search(r'name="prompt" value="([^"]+)"', page)
            assert action and prompt, page[:500]
            form = {"prompt": prompt.group(1), "login": user, "password": "x"}
            target = action.group(1) if action.group(1).startswith("http") else issuer + action.group(1)
            async with http.post(target, data=form, allow_redirects=False) as resp:
                assert resp.status in (302, 303), await resp.text()
                url = resp.headers["Location"]
                url = url if url.startswith("http") else issuer + url
        params = parse_qs(urlsplit(url).query)
        assert params.get("state") == ["st"], url
        async with http.post(
            f"{issuer}/token",
            data={"grant_type": "authorization_code", "code": params["code"][0],
                  "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
            headers={"Authorization": aiohttp.encode_basic_auth("chat-ui", "chat-ui-secret")},
        ) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())


async def test_independent_provider_client_credentials_token_is_a_service_principal(
    op_auth: Authenticator, provider: str
) -> None:
    p = await op_auth.authenticate(bearer(await _client_credentials(provider)))
    assert (p.sub, p.kind, p.client_id, p.issuer) == ("batch", "service", "batch", provider)
    assert p.claims["scope"] == "api:read"


async def test_independent_provider_user_token_is_accepted_with_claims_mapped(
    op_auth: Authenticator, provider: str
) -> None:
    tokens = await _authorization_code(provider, "alice")
    p = await op_auth.authenticate({"x-api-key": tokens["access_token"]})
    assert (p.sub, p.kind, p.client_id) == ("alice", "user", "chat-ui")
    assert (p.email, p.groups, p.roles, p.teams) == (
        "alice@example.com", ("ml-team",), ("ml-user",), ("research",)
    )
    # The same flow's ID token is a different credential and must not pass as an access token.
    with pytest.raises(GatewayError) as info:
        await op_auth.authenticate(bearer(tokens["id_token"]))
    assert info.value.status == 401
