"""The auditor web view in headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.audit.workspace import sign_in
from tests.conftest import services_required
from tests.harness import running_gateway

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("REGOGATE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


@pytest.fixture
def chromium() -> str:
    return need_chromium()


def need_chromium() -> str:
    """Debian's chromium, or skip (fail with REGOGATE_REQUIRE_SERVICES=1)."""
    if not Path(CHROMIUM).exists():
        msg = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if services_required():
            pytest.fail(f"{msg}; REGOGATE_REQUIRE_SERVICES=1 requires it")
        pytest.skip(msg)
    return CHROMIUM


async def test_auditor_sees_alices_requests_and_a_non_auditor_is_refused(
    tmp_path: Path, chromium: str
) -> None:
    from playwright.async_api import async_playwright

    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        done = await client.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hello"}])
        alice_request = done.headers["x-request-id"]
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)
            try:
                page = await browser.new_page()
                # Signed in through the dev IdP's login page: the page never holds a token.
                await sign_in(page, gw.url, "erin")
                await page.wait_for_selector("#timeline tbody tr")
                await page.fill("input[name=user]", "alice")
                await page.click("#filters button[type=submit]")
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('#timeline tbody tr')].length > 0 && "
                    "[...document.querySelectorAll('#timeline tbody tr')].every(r => r.cells[2].textContent === 'alice')")
                ids = await page.eval_on_selector_all(
                    "#timeline tbody tr", "rows => rows.map(r => r.dataset.requestId)")
                assert alice_request in ids
                await page.wait_for_function(
                    "() => document.querySelector('#chain').dataset.state === 'valid'")

                other = await (await browser.new_context()).new_page()
                await sign_in(other, gw.url, "bob", expect_workspace=False)
                assert await other.get_attribute("#sign-in-result", "data-status") == "403"
                assert await other.text_content("#reason") == "api_not_allowed"
                await other.goto(f"{gw.url}/audit/")
                await other.wait_for_function(
                    "() => document.querySelector('#whoami').dataset.signedIn === 'false'")
                assert await other.locator("#timeline tbody tr").count() == 0
            finally:
                await browser.close()
