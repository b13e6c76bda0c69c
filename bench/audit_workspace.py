"""The auditor workspace at 100,000 records (docs/performance.md, "Auditor workspace").

    python bench/audit_workspace.py                       # SQLite and PostgreSQL
    python bench/audit_workspace.py --records 20000 --no-postgres --no-browser

Fills a fresh trail through the real store (hash chain, group commit, checkpoints): alice gets
``--records`` records (intent + completion per request, spread over 30 days), a dozen other
people 20 % more between them, a few hundred of them denials. Then prints, per store, the
median wall time of

* the reader calls behind each view (what the API runs after the policy check): the first
  page of alice's records (page + total), a page deep in her history (keyset cursor), a
  reason filter, the overview, the person view;
* the same views over HTTP through a running gateway (token check, policy, the audit.read
  record made durable, JSON), with the official dev IdP's token for an auditor;
* with Debian's Chromium (Playwright): the page load until the view has rendered.

Wall-clock figures on a shared machine: read them as orders of magnitude, not as exact values.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pep.audit.factory import open_store  # noqa: E402
from pep.audit.pages import apply_cursor, encode_cursor  # noqa: E402
from pep.audit.query import AuditQuery  # noqa: E402
from pep.audit.reader import AuditReader, open_reader  # noqa: E402
from pep.audit.settings import AuditSettings  # noqa: E402

OTHERS = [f"user{i:02d}" for i in range(12)]
PG_DSN = os.environ.get("REGOGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CHROMIUM = os.environ.get("REGOGATE_CHROMIUM", "/usr/bin/chromium")


def event(user: str, n: int, kind: str, day: int, allow: bool = True) -> dict[str, Any]:
    teams = {"alice": ["research"]}.get(user, ["sales" if n % 2 else "platform"])
    doc: dict[str, Any] = {
        "schema_version": "v1", "event": kind,
        "time": f"2026-01-{day:02d}T{n % 24:02d}:{n % 60:02d}:00.{n % 1000000:06d}Z",
        "request_id": f"req_{user}_{n}", "decision_id": f"req_{user}_{n}",
        "who": {"subject": user, "issuer": "http://127.0.0.1/dev", "email": f"{user}@example.com",
                "groups": ["staff"], "teams": teams, "client_id": "bench", "kind": "user"},
        "what": {"api": "chat.completions", "model_requested": "mock-gpt" if n % 3 else "mock-gpt-eu",
                 "model_served": "mock-gpt" if n % 3 else "mock-gpt-eu", "provider": "mock"},
        "decision": {"allow": allow, "policy_revision": "sha256:bench",
                     "reasons": [] if allow else [{"code": "model_not_allowed", "message": "no"}]},
        "extra": {},
    }
    if kind != "request.intent":
        doc["outcome"] = {"status": 200 if allow else 403, "tokens_in": 20, "tokens_out": 40,
                          "cost_usd": 0.0004, "latency_ms": 50.0} if allow else {"status": 403}
    return doc


def events(records: int) -> list[dict[str, Any]]:
    out = []
    for n in range(records // 2):
        day = 1 + (n * 30) // (records // 2)
        out += [event("alice", n, "request.intent", day), event("alice", n, "request.completion", day)]
    for n in range(records // 5):
        user = OTHERS[n % len(OTHERS)]
        day = 1 + (n * 30) // (records // 5)
        out.append(event(user, n, "policy.deny", day, allow=False) if n % 40 == 0
                   else event(user, n, "request.completion", day))
    out.sort(key=lambda e: e["time"])
    return out


async def fill(settings: AuditSettings, data_dir: Path, docs: list[dict[str, Any]]) -> float:
    store = open_store(settings, data_dir)
    await store.start()
    t = time.perf_counter()
    for i in range(0, len(docs), 2000):
        await asyncio.gather(*(store.append(d) for d in docs[i:i + 2000]))
    await store.close()
    return time.perf_counter() - t


async def median_ms(fn: Callable[[], Awaitable[Any]], repeat: int = 7) -> float:
    await fn()  # warm (connections, page cache)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        await fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


async def vacuum_analyze(audit: dict[str, Any]) -> None:
    import asyncpg

    conn = await asyncpg.connect(audit["store"])
    try:
        await conn.execute(f'VACUUM ANALYZE "{audit["pg_schema"]}".audit_records')
    finally:
        await conn.close()


async def reader_figures(reader: AuditReader, only_first: bool = False) -> dict[str, float]:
    async def person_query(**kw: Any) -> AuditQuery:  # as pep.audit.apicommon.resolve_user
        subjects = ("alice", *await reader.subjects_with_email("alice"))
        return AuditQuery(user="alice", subjects=tuple(dict.fromkeys(subjects)), **kw)

    alice = await person_query(order="desc", limit=51, hide_reads=True)
    deep_seq = (await reader.query(dataclasses.replace(alice, limit=1, order="asc")))[0].seq + 500
    deep = apply_cursor(alice, encode_cursor(alice, deep_seq))

    async def first_page() -> None:
        q = await person_query(order="desc", limit=51, hide_reads=True)
        await reader.query(q)
        await reader.count(q)

    async def deep_page() -> None:
        await reader.query(deep)

    async def reason() -> None:
        q = AuditQuery(reason="model_not_allowed", order="desc", limit=51, hide_reads=True)
        await reader.query(q)
        await reader.count(q)

    async def overview() -> None:
        q = AuditQuery()
        await reader.summary(q, "day")
        await reader.query(AuditQuery(decision="deny", order="desc", limit=10))

    async def person() -> None:
        q = await person_query()
        await reader.query(dataclasses.replace(q, order="desc", limit=1))
        await reader.summary(q, "day")
        await reader.query(dataclasses.replace(q, decision="deny", order="desc", limit=50))

    if only_first:
        return {"first page of alice (50 + total)": await median_ms(first_page)}
    return {"first page of alice (50 + total)": await median_ms(first_page),
            "a page deep in her history (cursor)": await median_ms(deep_page),
            "reason filter (+ total)": await median_ms(reason),
            "overview (all time)": await median_ms(overview, 3),
            "person view (alice)": await median_ms(person, 3)}


async def gateway_figures(audit: dict[str, Any], data_dir: Path, browser: bool) -> dict[str, float]:
    import aiohttp
    from aiohttp import web

    from idp.testing import running_idp
    from pep.app import create_app
    from pep.config import settings_from_mapping
    from pep.defaults import embedded_mapping
    from pep.http.edge import GatewayRunner

    out: dict[str, float] = {}
    async with running_idp(data_dir / "idp") as idp:
        mapping = embedded_mapping(data_dir=data_dir, issuer=idp.issuer, port=0)
        mapping["audit"] = {**mapping.get("audit", {}), **audit}
        runner = GatewayRunner(create_app(settings_from_mapping(mapping)), handler_cancellation=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        token = idp.token("erin")
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
                async def get(path: str) -> None:
                    async with s.get(url + path) as resp:
                        assert resp.status == 200, (path, resp.status, await resp.text())
                        await resp.read()

                out["HTTP: first page of alice"] = await median_ms(
                    lambda: get("/audit/v1/events?user=alice"))
                out["HTTP: overview (last 7 days)"] = await median_ms(
                    lambda: get("/audit/v1/overview?since=2026-01-24"), 3)
                out["HTTP: person view (alice)"] = await median_ms(
                    lambda: get("/audit/v1/person?user=alice"), 3)
                out["HTTP: verify the whole trail"] = await median_ms(
                    lambda: get("/audit/v1/verify"), 1)
            if browser and Path(CHROMIUM).exists():
                out.update(await browser_figures(url))
        finally:
            await runner.cleanup()
    return out


async def browser_figures(url: str) -> dict[str, float]:
    from playwright.async_api import async_playwright

    out: dict[str, float] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = await browser.new_page(viewport={"width": 1100, "height": 900})
        # Signed in as erin through the dev IdP's login page, like an auditor.
        await page.goto(f"{url}/audit/")
        await page.click("#sign-in")
        await page.wait_for_selector("#users")
        await page.check("input[name=username][value=erin]")
        await page.click("#sign-in")
        await page.wait_for_function(
            "() => document.querySelector('#whoami')?.dataset.signedIn === 'true'")
        await page.wait_for_function(
            "() => document.querySelector('#chain').dataset.state !== 'unknown'", timeout=300_000)
        for label, query in (("page load: records of alice", "view=records&user=alice"),
                             ("page load: person view (alice)", "view=person&user=alice"),
                             ("page load: overview (last 7 days)", "view=overview&since=2026-01-24")):
            times = []
            for _ in range(4):  # the first one warms; the trail check each load starts is
                # waited for after the clock stops, so loads do not queue behind each other
                t = time.perf_counter()
                await page.goto(f"{url}/audit/?{query}")
                await page.wait_for_selector("#view[data-ready=true]", state="attached",
                                             timeout=120_000)
                times.append(time.perf_counter() - t)
                await page.wait_for_function(
                    "() => document.querySelector('#chain').dataset.state !== 'unknown'",
                    timeout=300_000)
            out[label] = statistics.median(times[1:]) * 1000
        await browser.close()
    return out


async def run_store(name: str, audit: dict[str, Any], docs: list[dict[str, Any]], browser: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "gw-data"
        settings = AuditSettings(**audit, checkpoint_every_s=3600.0, seal_idle_s=3600.0)
        secs = await fill(settings, data_dir, docs)
        print(f"\n{name}: {len(docs):,} records written in {secs:.1f} s "
              f"({len(docs) / secs:,.0f} records/s through the store)")
        reader = open_reader(audit["store"], pg_schema=audit.get("pg_schema", "public"))
        fresh: dict[str, float] = {}
        try:
            if "pg_schema" in audit:
                # A table just filled has no statistics and no visibility map yet, so the total
                # cannot come from the index alone; autovacuum (insert-triggered since
                # PostgreSQL 13) fixes both. Shown once as written, then as autovacuum leaves it.
                fresh = await reader_figures(reader, only_first=True)
                await vacuum_analyze(audit)
            figures = await reader_figures(reader)
        finally:
            await reader.close()
        for label, ms in fresh.items():
            print(f"  {label + ', before any VACUUM':<40} {ms:8.1f} ms")
        figures.update(await gateway_figures(audit, data_dir, browser))
        for label, ms in figures.items():
            print(f"  {label:<40} {ms:8.1f} ms")


async def write_cost(records: int) -> None:
    """CPU per appended record (SQLite, all threads of this process) with and without the
    workspace's indexes: what they add to every request's audit write."""
    import re

    import pep.audit.sqlite_store as sqlite_store
    from pep.audit import sqlite_schema

    docs = events(records)[:records]
    lean = re.sub(r"DROP INDEX IF EXISTS audit_records_subject;\n", "", sqlite_schema.SCHEMA)
    lean = re.sub(r"CREATE INDEX IF NOT EXISTS audit_records_(person|email|event|decision|model|"
                  r"served) ON [^;]*;\n", "", lean)
    lean = lean.replace("-- The auditor", "CREATE INDEX IF NOT EXISTS audit_records_subject ON "
                        "audit_records (subject, seq);\n-- The auditor")
    print(f"\nwrite cost, SQLite, {len(docs):,} records appended in batches of 2,000:")
    for label, schema in (("without the workspace indexes", lean),
                          ("with them", sqlite_schema.SCHEMA)):
        sqlite_store.SCHEMA = schema  # type: ignore[attr-defined]
        with tempfile.TemporaryDirectory() as tmp:
            settings = AuditSettings(store=f"sqlite:///{Path(tmp) / 'audit.db'}",
                                     checkpoint_every_s=3600.0, seal_idle_s=3600.0)
            cpu = time.process_time()
            secs = await fill(settings, Path(tmp), docs)
            cpu = time.process_time() - cpu
        print(f"  {label:<32} {cpu / len(docs) * 1e6:6.1f} us CPU per record, "
              f"{len(docs) / secs:,.0f} records/s")
    sqlite_store.SCHEMA = sqlite_schema.SCHEMA  # type: ignore[attr-defined]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000, help="alice's records")
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--write-cost", type=int, metavar="N", default=0,
                    help="only measure the indexes' cost per appended record over N records")
    args = ap.parse_args()
    if args.write_cost:
        await write_cost(args.write_cost)
        return
    docs = events(args.records)
    print(f"trail: {len(docs):,} records, alice {args.records:,} of them; "
          f"machine: {os.cpu_count()} CPUs (shared: wall-clock figures are noisy)")
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            await run_store("SQLite", {"store": f"sqlite:///{Path(tmp) / 'audit.db'}"}, docs,
                            not args.no_browser)
    if not args.no_postgres:
        import asyncpg

        schema = f"bench_ws_{uuid.uuid4().hex[:8]}"
        try:
            await run_store("PostgreSQL", {"store": PG_DSN, "pg_schema": schema}, docs,
                            not args.no_browser)
        finally:
            conn = await asyncpg.connect(PG_DSN)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
