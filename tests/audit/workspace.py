"""Signing in to the auditor workspace through the dev IdP's login page, for tests.

    async with running_gateway(tmp_path) as gw:
        page = await browser.new_page()
        await sign_in(page, gw.url, "erin")            # Chromium: the real pages and redirects
        ...
        async with workspace_http(gw.url) as ws:        # aiohttp: the same flow, no browser
            s = await ws.sign_in("erin")
            await ws.get_json("/audit/v1/events")       # cookie + X-CSRF-Token

Both walk the whole flow: /audit/login -> the IdP's /authorize page -> pick the user ->
/audit/callback -> /audit/. Nothing is minted in-process: the session holds whatever the
dev IdP issued for the code.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

SESSION_COOKIE = "regogate_ws"


async def sign_in(page: Any, base_url: str, user: str, *, expect_workspace: bool = True) -> None:
    """In a Playwright page: sign in as ``user`` (a dev IdP username). With
    ``expect_workspace`` the call returns once the page shows the user as signed in;
    otherwise once the sign-in result (e.g. the refusal page) has loaded."""
    await page.goto(f"{base_url}/audit/")
    await page.click("#sign-in")
    await page.wait_for_selector("#users")
    await page.check(f"input[name=username][value={user}]")
    await page.click("#sign-in")  # the IdP page's submit button has the same id
    if expect_workspace:
        await page.wait_for_function(
            "() => document.querySelector('#whoami')?.dataset.signedIn === 'true'")
    else:
        await page.wait_for_selector("#sign-in-result")


@dataclass
class HttpResult:
    status: int
    location: str | None
    text: str


class WorkspaceClient:
    """An aiohttp client with a cookie jar, driving the sign-in like a browser would."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url
        self.http = http
        self.csrf_token: str | None = None

    async def get(self, url: str, **kw: Any) -> HttpResult:
        async with self.http.get(url, allow_redirects=False, **kw) as resp:
            return HttpResult(resp.status, resp.headers.get("Location"), await resp.text())

    async def start(self) -> str:
        """/audit/login -> the IdP's authorization URL."""
        res = await self.get(f"{self.base_url}/audit/login")
        assert res.status == 302, res
        assert res.location is not None
        return res.location

    async def idp_login(self, authorize_url: str, user: str, *,
                        action: str = "approve") -> str:
        """The IdP's login page, then its form: returns where the IdP redirects (callback)."""
        res = await self.get(authorize_url)
        assert res.status == 200, res.text
        form = dict(re.findall(r'<input type=hidden name=(\w+) value=([^>\s]+)>', res.text))
        issuer = authorize_url.split("/authorize", 1)[0]
        data = {**form, "username": user, "action": action}
        async with self.http.post(f"{issuer}/authorize", data=data, allow_redirects=False,
                                  headers={"Origin": issuer}) as resp:
            assert resp.status == 303, await resp.text()
            return resp.headers["Location"]

    async def sign_in(self, user: str) -> dict[str, Any]:
        callback = await self.idp_login(await self.start(), user)
        res = await self.get(callback)
        assert res.status == 303 and res.location == "/audit/", res
        return await self.session()

    async def session(self) -> dict[str, Any]:
        async with self.http.get(f"{self.base_url}/audit/session") as resp:
            doc: dict[str, Any] = await resp.json()
        self.csrf_token = doc.get("csrf_token")
        return doc

    def csrf_headers(self) -> dict[str, str]:
        assert self.csrf_token is not None, "sign in first"
        return {"X-CSRF-Token": self.csrf_token}

    async def get_json(self, path: str, *, headers: dict[str, str] | None = None,
                       csrf: bool = True) -> tuple[int, Any]:
        sent = {**(self.csrf_headers() if csrf else {}), **(headers or {})}
        async with self.http.get(f"{self.base_url}{path}", headers=sent) as resp:
            return resp.status, await resp.json()

    async def logout(self, *, headers: dict[str, str] | None = None,
                     csrf: bool = True) -> tuple[int, Any]:
        sent = {**(self.csrf_headers() if csrf else {}), **(headers or {})}
        async with self.http.post(f"{self.base_url}/audit/logout", headers=sent) as resp:
            return resp.status, await resp.json()

    def session_cookie(self) -> str | None:
        for cookie in self.http.cookie_jar:
            if cookie.key == SESSION_COOKIE:
                return cookie.value
        return None


@asynccontextmanager
async def workspace_http(base_url: str) -> AsyncIterator[WorkspaceClient]:
    # unsafe=True: keep cookies set by an IP-address host (127.0.0.1).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield WorkspaceClient(base_url, http)
