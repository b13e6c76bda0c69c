"""Auditor HTTP API on a real in-process gateway (dev IdP tokens, embedded policy)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import aiohttp

from tests.harness import running_gateway


async def get(url: str, token: str | None, path: str, **params: str) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s:
        resp = await s.get(url + path, params=params, headers=headers)
        await resp.read()
        return resp


async def test_auditor_reads_alices_records_and_the_read_is_audited(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        await client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        resp = await get(gw.url, gw.token("erin"), "/audit/v1/events", user="alice")
        assert resp.status == 200
        body = await resp.json()
        events = [r["event"] for r in body["data"]]
        assert "request.intent" in events and "request.completion" in events
        assert {r["who"]["subject"] for r in body["data"]} == {"alice"}
        reads = await (await get(gw.url, gw.token("erin"), "/audit/v1/events", event="audit.read")).json()
        # Newest first: this very read is already in the trail before its answer was sent.
        assert [r["extra"]["filters"] for r in reads["data"]] == [{"event": "audit.read"}, {"user": "alice"}]
        assert {r["who"]["subject"] for r in reads["data"]} == {"erin"}


async def test_non_auditor_is_refused_and_the_refusal_is_audited(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        resp = await get(gw.url, gw.token("alice"), "/audit/v1/events")
        assert resp.status == 403
        denies = await (await get(gw.url, gw.token("erin"), "/audit/v1/events",
                                  decision="deny", user="alice")).json()
        assert denies["data"] and denies["data"][0]["what"]["api"] == "audit.read"


async def test_missing_token_gets_401(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        resp = await get(gw.url, None, "/audit/v1/verify")
        assert resp.status == 401 and "Bearer" in resp.headers["WWW-Authenticate"]


async def test_unknown_filter_is_a_400(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        resp = await get(gw.url, gw.token("erin"), "/audit/v1/events", usr="alice")
        assert resp.status == 400
        assert (await resp.json())["error"]["param"] == "usr"


async def test_verify_report_and_csv_endpoints_answer_for_an_auditor(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        await client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        erin = gw.token("erin")
        verify = await (await get(gw.url, erin, "/audit/v1/verify")).json()
        assert verify["valid"] and verify["records"] >= 2
        report = await (await get(gw.url, erin, "/audit/v1/report", by="user")).json()
        alice = [r for r in report["data"] if r["user"] == "alice"]
        assert alice and alice[0]["requests"] == 1
        resp = await get(gw.url, erin, "/audit/v1/export.csv", user="alice")
        assert resp.headers["Content-Type"].startswith("text/csv")
        async with aiohttp.ClientSession() as s:
            text = await (await s.get(gw.url + "/audit/v1/export.csv", params={"user": "alice"},
                                      headers={"Authorization": f"Bearer {erin}"})).text()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows and {r["subject"] for r in rows} == {"alice"}


async def test_web_page_is_served_with_a_strict_content_security_policy(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        resp = await get(gw.url, None, "/audit/")
        assert resp.status == 200
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Referrer-Policy"] == "no-referrer"
