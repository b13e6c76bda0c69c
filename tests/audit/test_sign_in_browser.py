"""Workspace sign-in in Debian's Chromium (Playwright): through the dev IdP's login page,
sign-out, session expiry, a cross-origin CSRF attempt refused, a non-auditor refused.

Screenshots go to the test's tmp directory; with REGOGATE_DOC_SCREENSHOTS=1 they are also
written to docs/img/ (the sign-in section of docs/audit.md shows them)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from pep.workspace.routes import WORKSPACE
from tests.audit.workspace import sign_in
from tests.harness import Gateway, running_gateway

from .test_browser import ARGS, need_chromium

pytestmark = pytest.mark.browser

DOC_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(name="chromium")
def _chromium() -> str:
    return need_chromium()


async def shot(page: Any, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("REGOGATE_DOC_SCREENSHOTS") == "1":
        DOC_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, DOC_IMG / name)


@asynccontextmanager
async def browser_for(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


async def _events(gw: Gateway, kind: str) -> list[dict[str, Any]]:
    return [r for r in await gw.audit_records() if r["event"] == kind]


async def _session_cookie(page: Any) -> str | None:
    cookies = await page.context.cookies()
    return next((c["value"] for c in cookies if c["name"] == "regogate_ws"), None)


async def test_an_auditor_signs_in_through_the_dev_idp_and_signs_out(
    tmp_path: Path, chromium: str
) -> None:
    async with running_gateway(tmp_path) as gw, browser_for(chromium) as browser:
        await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hello"}])
        page = await browser.new_page(viewport={"width": 1100, "height": 700})
        await page.goto(f"{gw.url}/audit/")
        await page.wait_for_selector("#sign-in:visible")
        assert await page.text_content("#sign-in") == "Sign in with the dev IdP"
        await shot(page, tmp_path, "workspace-sign-in.png")

        await page.click("#sign-in")
        await page.wait_for_selector("#users")
        assert "NOT FOR PRODUCTION" in (await page.content())
        await page.check("input[name=username][value=erin]")
        await shot(page, tmp_path, "dev-idp-login.png")
        await page.click("#sign-in")

        await page.wait_for_function(
            "() => document.querySelector('#whoami').dataset.signedIn === 'true'")
        assert page.url == f"{gw.url}/audit/"
        assert "Erin Engel" in (await page.text_content("#whoami") or "")
        await page.wait_for_selector("#timeline tbody tr")
        await page.wait_for_function(
            "() => document.querySelector('#chain').dataset.state === 'valid'")
        cookie = next(c for c in await page.context.cookies() if c["name"] == "regogate_ws")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/audit"
        # The page never sees the session: HttpOnly keeps it out of document.cookie.
        assert "regogate_ws" not in await page.evaluate("document.cookie")
        await shot(page, tmp_path, "workspace-signed-in.png")

        await page.click("#sign-out")
        await page.wait_for_function(
            "() => document.querySelector('#whoami').dataset.signedIn === 'false'")
        assert await page.locator("#timeline tbody tr").count() == 0
        assert await _session_cookie(page) is None
        assert [r["who"]["subject"] for r in await _events(gw, "session.logout")] == ["erin"]
        # Signed out is signed out: a reload does not bring the session back.
        await page.reload()
        await page.wait_for_selector("#sign-in:visible")


async def test_an_expired_session_asks_to_sign_in_again(tmp_path: Path, chromium: str) -> None:
    async with running_gateway(tmp_path) as gw, browser_for(chromium) as browser:
        page = await browser.new_page(viewport={"width": 1100, "height": 500})
        await sign_in(page, gw.url, "erin")
        await page.wait_for_selector("#timeline tbody tr")
        sessions = gw.app[WORKSPACE].sessions
        sessions.clock = lambda: time.time() + sessions.idle_s + 1  # idle for too long
        await page.click("#filters button[type=submit]")
        await page.wait_for_function(
            "() => document.querySelector('#whoami').dataset.reason === 'unknown' || "
            "document.querySelector('#whoami').dataset.signedIn === 'false'")
        await page.wait_for_selector("#sign-in:visible")
        assert await page.locator("#timeline tbody tr").count() == 0
        failures = await _events(gw, "auth.failure")
        assert failures[-1]["extra"]["code"] == "session_expired"
        sessions.clock = time.time
        await shot(page, tmp_path, "workspace-expired.png")
        # Signing in again works at once.
        await sign_in(page, gw.url, "erin")


ATTACKER_PAGE = """<!doctype html><html><body>
<form id=f method=post action="{gw}/audit/logout"></form>
<script>
  // A page on another origin of the same host: the Strict cookie IS sent (same site), so
  // only the CSRF checks stand between it and the auditor's session.
  window.results = {{}};
  fetch("{gw}/audit/logout", {{method: "POST", credentials: "include", mode: "no-cors",
                               headers: {{"X-CSRF-Token": "guess"}}}})
    .then(() => {{ window.results.fetch = "sent"; }})
    .catch((e) => {{ window.results.fetch = "blocked: " + e; }});
  fetch("{gw}/audit/session", {{credentials: "include"}})
    .then((r) => r.text()).then((t) => {{ window.results.read = t; }})
    .catch((e) => {{ window.results.read = "blocked"; }});
</script></body></html>"""


async def test_a_cross_origin_csrf_attempt_is_refused(tmp_path: Path, chromium: str) -> None:
    async with running_gateway(tmp_path) as gw, browser_for(chromium) as browser:
        context = await browser.new_context()
        page = await context.new_page()
        await sign_in(page, gw.url, "erin")
        await page.wait_for_selector("#timeline tbody tr")

        async def attacker(_: web.Request) -> web.Response:
            return web.Response(text=ATTACKER_PAGE.format(gw=gw.url), content_type="text/html")

        app = web.Application()
        app.router.add_get("/", attacker)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        evil = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        try:
            bad = await context.new_page()
            await bad.goto(evil)
            await bad.wait_for_function("() => window.results.fetch && window.results.read")
            read = await bad.evaluate("window.results.read")
            assert read == "blocked"  # no CORS: the session answer (CSRF token) is unreadable
            # The auto-submitted form, too (a top-level navigation).
            async with bad.expect_navigation() as nav:
                await bad.evaluate("document.getElementById('f').submit()")
            answer = await nav.value
            assert answer is not None and answer.status == 403
            assert "csrf_failed" in await answer.text()
        finally:
            await runner.cleanup()
        rejected = [r for r in await _events(gw, "request.rejected")
                    if r["what"]["path"].startswith("/audit/")]  # not Chromium's favicon.ico
        assert {r["extra"]["reason"] for r in rejected} == {"csrf_failed"}
        assert {r["what"]["path"] for r in rejected} == {"/audit/logout", "/audit/session"}
        assert await _events(gw, "session.logout") == []
        # The auditor's session survived every attempt.
        await page.click("#filters button[type=submit]")
        await page.wait_for_selector("#timeline tbody tr")
        assert (await page.get_attribute("#whoami", "data-signed-in")) == "true"


async def test_a_non_auditor_is_refused_with_a_clear_page(tmp_path: Path, chromium: str) -> None:
    async with running_gateway(tmp_path) as gw, browser_for(chromium) as browser:
        page = await browser.new_page(viewport={"width": 1100, "height": 500})
        await sign_in(page, gw.url, "bob", expect_workspace=False)
        assert await page.get_attribute("#sign-in-result", "data-status") == "403"
        text = await page.text_content("#refused") or ""
        assert "Bob Berg" in text and "does not allow you to read the audit trail" in text
        assert await page.text_content("#reason") == "api_not_allowed"
        assert await _session_cookie(page) is None
        await shot(page, tmp_path, "workspace-refused.png")
