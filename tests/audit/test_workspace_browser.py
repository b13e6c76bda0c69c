"""The auditor workspace in Debian's Chromium (Playwright), on data from real gateway traffic
(official openai SDK calls through the gateway): overview, person, request and records views,
pages past 200 records, filters, CSV/JSONL exports of a filtered set, a tampered trail shown
as INVALID, 800 px and the keyboard.

Screenshots go to the test's tmp directory; with REGOGATE_DOC_SCREENSHOTS=1 they are also
written to docs/img/ (how docs/audit.md's pictures are made)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import sqlite3
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.harness import Gateway, running_gateway

from .test_browser import ARGS, chromium  # noqa: F401 - the fixture
from .workspace import sign_in

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
DOC_IMG = ROOT / "docs" / "img"
ALICE_REQUESTS = 105  # + the e-mail one: 212 records, past the old page's silent 200-row stop
ALICE_RECORDS = 2 * (ALICE_REQUESTS + 1)


async def traffic(gw: Gateway, alice: int = ALICE_REQUESTS) -> dict[str, str]:
    """Real requests: alice's allowed chats, bob's denied ones, carol's admin model."""
    ids: dict[str, str] = {}
    client = gw.openai("alice")
    for n in range(alice):
        done = await client.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": f"question {n}"}])
        ids.setdefault("alice", done.headers["x-request-id"])
    bob = gw.openai("bob")
    for _ in range(3):
        with pytest.raises(openai.PermissionDeniedError) as info:
            await bob.chat.completions.create(
                model="mock-gpt-admin", messages=[{"role": "user", "content": "let me in"}])
        ids["bob_denied"] = info.value.response.headers["x-request-id"]
    done = await client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "write to dana@example.org"}])
    ids["alice_email"] = done.headers["x-request-id"]
    carol = gw.openai("carol")
    await carol.chat.completions.create(
        model="mock-gpt-admin", messages=[{"role": "user", "content": "admin work"}])
    return ids


async def shot(page: Any, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=str(tmp_path / name), full_page=True)
    if os.environ.get("REGOGATE_DOC_SCREENSHOTS") == "1":
        DOC_IMG.mkdir(exist_ok=True)
        await page.screenshot(path=str(DOC_IMG / name), full_page=True)


async def open_view(page: Any, gw: Gateway, query: str) -> None:
    await page.goto(f"{gw.url}/audit/?{query}")
    await ready(page)


async def ready(page: Any) -> None:
    await page.wait_for_selector("#view[data-ready]", state="attached")
    state = await page.get_attribute("#view", "data-ready")
    assert state == "true", await page.text_content("#status")


async def click_and_wait(page: Any, selector: str) -> None:
    await page.evaluate("() => { delete document.querySelector('#view').dataset.ready; }")
    await page.click(selector)
    await ready(page)


async def launch(pw: Any, chromium: str) -> Any:  # noqa: F811 - the fixture's value
    return await pw.chromium.launch(executable_path=chromium, args=ARGS, headless=True)


async def test_overview_person_and_request_views(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    from playwright.async_api import async_playwright

    async with running_gateway(tmp_path) as gw:
        ids = await traffic(gw, alice=12)
        async with async_playwright() as pw:
            browser = await launch(pw, chromium)
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                await sign_in(page, gw.url, "erin")  # through the dev IdP's login page
                await open_view(page, gw, "view=overview")
                await page.wait_for_function(
                    "() => document.querySelector('#trail-status').dataset.state === 'valid'")
                status = await page.text_content("#trail-status") or ""
                assert status.startswith("Trail verified:") and "last checkpoint" in status
                cards = await page.inner_text(".cards")
                assert "17" in cards  # 12 + 1 + 3 + 1 requests
                assert await page.locator("#chart-requests canvas").count() == 1
                assert await page.locator("#chart-usage canvas").count() == 1
                denials = await page.inner_text("#recent-denials")
                assert "bob" in denials and "model_not_allowed" in denials
                await shot(page, tmp_path, "audit-overview.png")

                await click_and_wait(page, "#recent-denials a[href*='view=person']")
                assert "view=person" in page.url and "user=bob" in page.url
                assert "Person: bob" in (await page.text_content("h2") or "")
                assert "mock-gpt-admin" in await page.inner_text("#person-models")
                assert await page.locator("#person-timeline li.deny").count() == 3
                async with page.expect_download() as dl:
                    await page.click("#export-bundle")
                bundle = orjson.loads(Path(await (await dl.value).path()).read_bytes())
                assert bundle["format"] == "regogate-audit-bundle"
                assert {r["seq"] for s in bundle["subjects"] for r in s["records"]}
                await shot(page, tmp_path, "audit-person.png")

                await click_and_wait(page, f"#person-timeline li[data-request-id='{ids['bob_denied']}'] a")
                assert f"id={ids['bob_denied']}" in page.url
                decision = await page.inner_text("#req-decision")
                assert "deny" in decision and "model_not_allowed" in decision
                assert "policy revision" in decision
                who = await page.inner_text("#req-who")
                assert "bob" in who and "contractors" in who and "sales" in who

                await open_view(page, gw, f"view=request&id={ids['alice']}")
                what = await page.inner_text("#req-what")
                assert "mock-gpt" in what and "tokens in / out" in what and "latency" in what
                summary = await page.text_content("#req-summary") or ""
                assert "request.intent → request.completion" in summary
                assert "SHA-256" in await page.inner_text("#req-content")  # audit level: digest
                await shot(page, tmp_path, "audit-request.png")
                await open_view(page, gw, f"view=request&id={ids['alice_email']}")
                decision = await page.inner_text("#req-decision")
                assert "email: 1" in decision and "redact" in decision
                assert "dana@example.org" not in await page.inner_text("#view")
                assert errors == []
            finally:
                await browser.close()


async def test_records_pages_past_200_filters_and_exports(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    from playwright.async_api import async_playwright

    async with running_gateway(tmp_path) as gw:
        await traffic(gw)
        async with async_playwright() as pw:
            browser = await launch(pw, chromium)
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 900},
                                              accept_downloads=True)
                await sign_in(page, gw.url, "erin")
                await open_view(page, gw, "view=records&user=alice&limit=100")
                info = await page.text_content("#page-info") or ""
                assert info == f"Records 1–100 of {ALICE_RECORDS}"
                seen: list[str] = []
                for expected in ("Records 101–200", f"Records 201–{ALICE_RECORDS}"):
                    seen += await page.eval_on_selector_all(
                        "#timeline tbody tr", "rows => rows.map(r => r.dataset.seq)")
                    await click_and_wait(page, "#next-page")
                    assert (await page.text_content("#page-info") or "").startswith(expected)
                seen += await page.eval_on_selector_all(
                    "#timeline tbody tr", "rows => rows.map(r => r.dataset.seq)")
                assert len(seen) == len(set(seen)) == ALICE_RECORDS
                assert await page.locator("#next-page").count() == 0
                # The browser's Back button returns to the previous page of records ...
                await page.evaluate("() => { delete document.querySelector('#view').dataset.ready; }")
                await page.go_back()
                await ready(page)
                assert (await page.text_content("#page-info") or "").startswith("Records 101–200")
                # ... and the URL is the state: opening it afresh shows the same page.
                shared = page.url
                await open_view(page, gw, shared.split("?", 1)[1])
                assert (await page.text_content("#page-info") or "").startswith("Records 101–200")

                # Filters through the form; auditors' reads hidden until the toggle.
                await open_view(page, gw, "view=records")
                await page.select_option("#filters select[name=decision]", "deny")
                await page.fill("#filters input[name=reason]", "model_not_allowed")
                await click_and_wait(page, "#filters button[type=submit]")
                assert "decision=deny" in page.url and "reason=model_not_allowed" in page.url
                assert await page.text_content("#page-info") == "Records 1–3 of 3"
                users = await page.eval_on_selector_all(
                    "#timeline tbody tr", "rows => rows.map(r => r.cells[2].textContent)")
                assert users == ["bob"] * 3
                async with page.expect_download() as dl:
                    await page.click("#export-csv")
                rows = list(csv.DictReader(io.StringIO(
                    Path(await (await dl.value).path()).read_text())))
                assert [r["subject"] for r in rows] == ["bob"] * 3
                assert {r["reasons"] for r in rows} == {"model_not_allowed"}
                async with page.expect_download() as dl:
                    await page.click("#export-jsonl")
                lines = Path(await (await dl.value).path()).read_text().splitlines()
                assert [orjson.loads(x)["decision"]["allow"] for x in lines] == [False] * 3
                await shot(page, tmp_path, "audit-records.png")

                # The auditor's own reads (every page above) stay out until the toggle; their
                # sign-in (session.login) is not a read and shows.
                events = "rows => rows.map(r => r.cells[1].textContent)"
                await open_view(page, gw, "view=records&api=audit.read")
                assert "audit.read" not in await page.eval_on_selector_all("#timeline tbody tr", events)
                await page.check("#filters input[name=reads]")
                await click_and_wait(page, "#filters button[type=submit]")
                assert "reads=show" in page.url
                shown = await page.eval_on_selector_all("#timeline tbody tr", events)
                assert shown.count("audit.read") > 10
            finally:
                await browser.close()


async def test_a_tampered_trail_is_shown_invalid(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    from playwright.async_api import async_playwright

    async with running_gateway(tmp_path) as gw:
        await traffic(gw, alice=3)
        db = gw.settings.server.data_dir / "audit.db"
        with sqlite3.connect(db) as conn:  # an insider edits a denial into an allow
            conn.execute("UPDATE audit_records SET body = replace(body, '\"allow\":false', "
                         "'\"allow\":true') WHERE event = 'policy.deny'")
        async with async_playwright() as pw:
            browser = await launch(pw, chromium)
            try:
                page = await browser.new_page(viewport={"width": 1100, "height": 900})
                await sign_in(page, gw.url, "erin")
                await open_view(page, gw, "view=overview")
                await page.wait_for_function(
                    "() => document.querySelector('#trail-status').dataset.state === 'invalid'")
                text = await page.text_content("#trail-status") or ""
                assert text.startswith("Trail INVALID:") and "does not match its hash" in text
                assert "INVALID" in (await page.text_content("#chain") or "")
                await shot(page, tmp_path, "audit-invalid.png")
            finally:
                await browser.close()


async def test_the_workspace_works_at_800px_with_the_keyboard(tmp_path: Path, chromium: str) -> None:  # noqa: F811
    from playwright.async_api import async_playwright

    async with running_gateway(tmp_path) as gw:
        await traffic(gw, alice=4)
        async with async_playwright() as pw:
            browser = await launch(pw, chromium)
            try:
                page = await browser.new_page(viewport={"width": 800, "height": 900})
                await sign_in(page, gw.url, "erin")
                for query in ("view=overview", "view=records", "view=person&user=alice"):
                    await open_view(page, gw, query)
                    width = await page.evaluate("() => document.documentElement.scrollWidth")
                    assert width <= 800, (query, width)
                # Tab to the "Records" link and press Enter: real links, visible focus.
                await open_view(page, gw, "view=overview")
                for _ in range(20):
                    await page.keyboard.press("Tab")
                    if await page.evaluate("() => document.activeElement.dataset.view") == "records":
                        break
                outline = await page.evaluate(
                    "() => getComputedStyle(document.activeElement).outlineStyle")
                assert outline == "solid"
                await page.evaluate("() => { delete document.querySelector('#view').dataset.ready; }")
                await page.keyboard.press("Enter")
                await ready(page)
                assert "view=records" in page.url
                assert await page.evaluate("() => document.activeElement.id") == "view"
            finally:
                await browser.close()


def test_vendored_uplot_matches_its_recorded_checksums() -> None:
    vendor = ROOT / "pep" / "audit" / "web" / "vendor"
    readme = (vendor / "README.md").read_text()
    for name in ("uPlot.esm.js", "uPlot.min.css"):
        digest = hashlib.sha256((vendor / "uplot" / name).read_bytes()).hexdigest()
        assert f"{digest}  uplot/{name}" in readme
    assert "MIT License" in (vendor / "uplot" / "LICENSE").read_text()
