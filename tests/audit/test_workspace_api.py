"""The workspace's data API on a real gateway, on SQLite and on the real PostgreSQL: pages
past 200 records with totals and keyset cursors, filters, exports of exactly the filtered
set, the overview, the person view and the evidence bundle."""

from __future__ import annotations

import csv
import sqlite3
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from pep.audit.factory import open_store
from pep.audit.settings import AuditSettings

from tests.conftest import drop_pg_schema
from tests.harness import Gateway, running_gateway

from .helpers import make_event

ALICE = 130  # requests -> 260 records (intent + completion): more than the old 200-row cap
BOB_DENIED = 12


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The gateway's audit settings for one store kind (a fresh schema on PostgreSQL)."""
    if request.param == "sqlite":
        yield {"store": f"sqlite:///{tmp_path / 'audit.db'}"}
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"audit_ws_{uuid.uuid4().hex[:10]}"
    yield {"store": dsn, "pg_schema": schema}
    import asyncio

    asyncio.run(drop_pg_schema(dsn, schema))


async def fill(audit: dict[str, Any], data_dir: Path) -> None:
    """alice: ALICE allowed requests (intent + completion) over two days; bob: denials."""
    store = open_store(AuditSettings(**audit, checkpoint_every_s=3600.0, seal_idle_s=3600.0),
                       data_dir)
    await store.start()
    for n in range(ALICE):
        day = 1 if n < ALICE // 2 else 2
        await store.append(make_event("alice", n, day=day))
        await store.append(make_event("alice", n, kind="request.completion", day=day,
                                      tokens=(10, 5)))
    for n in range(BOB_DENIED):
        await store.append(make_event("bob", n, kind="policy.deny", allow=False, day=2,
                                      model="mock-gpt-admin"))
    await store.close()


@asynccontextmanager
async def workspace(tmp_path: Path, audit: dict[str, Any]) -> AsyncIterator[Gateway]:
    await fill(audit, tmp_path / "gw-data")
    async with running_gateway(tmp_path, config={"audit": audit}) as gw:
        yield gw


async def get(gw: Gateway, path: str, **params: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s:
        resp = await s.get(gw.url + path, params=params,
                           headers={"Authorization": f"Bearer {gw.token('erin')}"})
        body = await resp.read()
        if resp.content_type == "application/json":
            return resp.status, orjson.loads(body)
        return resp.status, body.decode()


async def walk(gw: Gateway, **filters: str) -> list[dict[str, Any]]:
    """Every page of a listing, following next_cursor."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {**filters, **({"cursor": cursor} if cursor else {})}
        status, page = await get(gw, "/audit/v1/events", **params)
        assert status == 200, page
        out.extend(page["data"])
        assert page["count"] == len(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return out
        cursor = page["next_cursor"]


def seqs(records: list[dict[str, Any]]) -> list[int]:
    return [r["chain"]["seq"] for r in records]


async def test_pages_walk_past_200_records_with_totals(tmp_path: Path, store: dict[str, Any]) -> None:
    async with workspace(tmp_path, store) as gw:
        status, first = await get(gw, "/audit/v1/events", user="alice", limit="50")
        assert status == 200
        assert first["total"] == 2 * ALICE and first["count"] == 50 and first["has_more"]
        records = await walk(gw, user="alice", limit="50")
        assert len(records) == 2 * ALICE > 200
        assert seqs(records) == sorted(seqs(records), reverse=True)  # newest first, no repeats
        assert len(set(seqs(records))) == len(records)
        assert {r["who"]["subject"] for r in records} == {"alice"}
        oldest_first = await walk(gw, user="alice", limit="70", order="asc")
        assert seqs(oldest_first) == sorted(seqs(records))


async def test_a_cursor_stays_put_while_records_are_appended(tmp_path: Path, store: dict[str, Any]) -> None:
    async with workspace(tmp_path, store) as gw:
        _, page1 = await get(gw, "/audit/v1/events", user="alice", limit="40")
        client = gw.openai("alice")
        for _ in range(3):  # new traffic lands on top while the auditor reads page 2
            await client.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "hi"}])
        _, page2 = await get(gw, "/audit/v1/events", user="alice", limit="40",
                             cursor=page1["next_cursor"])
        assert page2["total"] == page1["total"] + 6
        assert seqs(page2["data"])[0] < seqs(page1["data"])[-1]
        everything = await walk(gw, user="alice", limit="500")
        assert seqs(everything)[6:86] == seqs(page1["data"]) + seqs(page2["data"])


async def test_a_cursor_for_other_filters_or_edited_is_a_400(tmp_path: Path) -> None:
    async with workspace(tmp_path, {"store": f"sqlite:///{tmp_path / 'audit.db'}"}) as gw:
        _, page = await get(gw, "/audit/v1/events", user="alice", limit="10")
        cursor = page["next_cursor"]
        status, body = await get(gw, "/audit/v1/events", user="bob", limit="10", cursor=cursor)
        assert status == 400 and body["error"]["code"] == "invalid_cursor"
        status, body = await get(gw, "/audit/v1/events", user="alice", order="asc", cursor=cursor)
        assert status == 400 and body["error"]["param"] == "cursor"
        for bad in ("x" * 300, "not-base64!", cursor[:-3], "WzEsImRlc2MiLC0xLCJ4Il0"):
            status, body = await get(gw, "/audit/v1/events", user="alice", cursor=bad)
            assert status == 400, bad
            assert body["error"]["type"] == "invalid_request_error"


async def test_filters_narrow_the_list_and_auditors_reads_are_hidden_by_default(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    async with workspace(tmp_path, store) as gw:
        async def total(**f: str) -> int:
            status, page = await get(gw, "/audit/v1/events", limit="1", **f)
            assert status == 200, page
            return int(page["total"])

        assert await total(user="alice@example.com") == 2 * ALICE
        assert await total(team="sales") == BOB_DENIED
        assert await total(model="mock-gpt-admin") == BOB_DENIED
        assert await total(decision="deny") == BOB_DENIED
        assert await total(reason="model_not_allowed") == BOB_DENIED
        assert await total(reason="no_such_reason") == 0
        assert await total(api="chat.completions") == 2 * ALICE + BOB_DENIED
        assert await total(event="request.completion", user="alice") == ALICE
        assert await total(since="2025-01-02", until="2025-01-03", user="alice") == ALICE
        assert await total(request_id="req_alice_7") == 2
        # every read above was audited, yet none shows unless asked for
        assert await total(api="audit.read") == 0
        shown = await total(api="audit.read", reads="show")
        assert shown >= 11
        assert await total(event="audit.read") == shown + 1  # naming the event shows them too
        status, body = await get(gw, "/audit/v1/events", reason="bad code!")
        assert status == 400 and body["error"]["code"] == "invalid_filter"
        status, body = await get(gw, "/audit/v1/events", reads="maybe")
        assert status == 400 and body["error"]["param"] == "reads"


async def test_exports_hold_exactly_the_filtered_set(tmp_path: Path, store: dict[str, Any]) -> None:
    async with workspace(tmp_path, store) as gw:
        filters = {"user": "alice", "since": "2025-01-02"}
        listed = await walk(gw, **filters, limit="200")
        assert len(listed) == ALICE
        hashes = sorted(r["chain"]["hash"] for r in listed)
        status, text = await get(gw, "/audit/v1/export.csv", **filters)
        assert status == 200
        rows = list(csv.DictReader(io.StringIO(text)))
        assert sorted(r["hash"] for r in rows) == hashes
        status, text = await get(gw, "/audit/v1/export.jsonl", **filters)
        lines = [orjson.loads(x) for x in text.splitlines()]
        assert sorted(x["chain"]["hash"] for x in lines) == hashes
        assert lines == sorted(listed, key=lambda r: r["chain"]["seq"])
        status, text = await get(gw, "/audit/v1/export.ocsf.jsonl", **filters)
        ocsf = [orjson.loads(x) for x in text.splitlines()]
        assert sorted(e["metadata"]["uid"] for e in ocsf) == hashes
        assert {e["class_uid"] for e in ocsf} == {6003}
        status, text = await get(gw, "/audit/v1/export.jsonl", decision="deny")
        assert len(text.splitlines()) == BOB_DENIED
        status, text = await get(gw, "/audit/v1/export.jsonl", user="nobody")
        assert status == 200 and text == ""


async def test_overview_counts_requests_once_by_day_team_model_and_decision(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    async with workspace(tmp_path, store) as gw:
        status, doc = await get(gw, "/audit/v1/overview")
        assert status == 200, doc
        assert doc["totals"]["requests"] == ALICE + BOB_DENIED
        assert doc["totals"]["denied"] == BOB_DENIED
        assert doc["totals"]["tokens"] == ALICE * 15
        assert [(s["t"], s["requests"]) for s in doc["series"]] == [
            ("2025-01-01", ALICE // 2), ("2025-01-02", ALICE - ALICE // 2 + BOB_DENIED)]
        assert doc["by_decision"] == {"allow": ALICE, "deny": BOB_DENIED}
        assert {t["team"]: t["requests"] for t in doc["by_team"]} == {
            "research": ALICE, "sales": BOB_DENIED}
        assert [m["model"] for m in doc["by_model"]] == ["mock-gpt", "mock-gpt-admin"]
        assert [u["user"] for u in doc["top_users"]] == ["alice", "bob"]
        assert len(doc["recent_denials"]) == 10
        assert doc["recent_denials"][0]["reasons"][0]["code"] == "model_not_allowed"
        assert doc["trail"]["checkpoints"] >= 1
        assert doc["trail"]["last_checkpoint"]["age_s"] >= 0
        _, hourly = await get(gw, "/audit/v1/overview", bucket="hour", since="2025-01-02")
        assert [s["t"] for s in hourly["series"]] == ["2025-01-02T10"]
        status, body = await get(gw, "/audit/v1/overview", bucket="week")
        assert status == 400 and body["error"]["param"] == "bucket"


async def test_person_view_and_evidence_bundle(tmp_path: Path, store: dict[str, Any]) -> None:
    async with workspace(tmp_path, store) as gw:
        status, doc = await get(gw, "/audit/v1/person", user="bob")
        assert status == 200 and doc["found"]
        assert doc["who"]["teams"] == ["sales"] and doc["who"]["email"] == "bob@example.com"
        assert doc["totals"]["requests"] == BOB_DENIED and doc["totals"]["denied"] == BOB_DENIED
        assert [m["model"] for m in doc["models"]] == ["mock-gpt-admin"]
        assert len(doc["denials"]) == BOB_DENIED
        _, alice = await get(gw, "/audit/v1/person", user="alice")
        assert alice["totals"]["tokens_in"] == ALICE * 10 and alice["denials"] == []
        status, bundle = await get(gw, "/audit/v1/bundle", user="bob")
        assert status == 200 and bundle["format"] == "regogate-audit-bundle"
        assert len(bundle["subjects"][0]["records"]) == BOB_DENIED
        from pep.audit.bundle import verify_bundle
        from pep.audit.checkpoints import DEFAULT_PUBLIC_KEY_NAME, load_public_key

        key = load_public_key(gw.settings.server.data_dir / DEFAULT_PUBLIC_KEY_NAME)
        assert verify_bundle(bundle, [key]).valid
        status, body = await get(gw, "/audit/v1/bundle", user="nobody")
        assert status == 404 and body["error"]["code"] == "bundle_unavailable"
        status, body = await get(gw, "/audit/v1/person")
        assert status == 400 and body["error"]["param"] == "user"


async def test_workspace_endpoints_refuse_a_non_auditor(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        async with aiohttp.ClientSession() as s:
            for path in ("/audit/v1/overview", "/audit/v1/person?user=alice",
                         "/audit/v1/bundle?user=alice", "/audit/v1/export.jsonl",
                         "/audit/v1/export.ocsf.jsonl"):
                resp = await s.get(gw.url + path,
                                   headers={"Authorization": f"Bearer {gw.token('alice')}"})
                assert resp.status == 403, path


WORKSPACE_INDEXES = {"audit_records_person", "audit_records_email", "audit_records_event",
                     "audit_records_decision", "audit_records_model", "audit_records_served"}


async def test_an_existing_store_gains_the_workspace_indexes_on_start(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    """A trail written by an older gateway (only the old (subject, seq) index) is upgraded the
    next time a gateway opens it, and its first page is then served from the new index."""
    import asyncpg

    await fill(store, tmp_path / "gw-data")
    if store["store"].startswith("sqlite"):
        db = tmp_path / "audit.db"

        def indexes() -> set[str]:
            with sqlite3.connect(db) as conn:
                return {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index'")}

        with sqlite3.connect(db) as conn:  # back to the old layout
            for name in WORKSPACE_INDEXES:
                conn.execute(f"DROP INDEX {name}")
            conn.execute("CREATE INDEX audit_records_subject ON audit_records (subject, seq)")
        before = indexes()
    else:
        schema = store["pg_schema"]

        async def pg_indexes() -> set[str]:
            conn = await asyncpg.connect(store["store"])
            try:
                return {r["indexname"] for r in await conn.fetch(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = $1", schema)}
            finally:
                await conn.close()

        conn = await asyncpg.connect(store["store"])
        try:
            for name in WORKSPACE_INDEXES:
                await conn.execute(f'DROP INDEX "{schema}".{name}')
            await conn.execute(
                f'CREATE INDEX audit_records_subject ON "{schema}".audit_records (subject, seq)')
        finally:
            await conn.close()
        before = await pg_indexes()
    assert "audit_records_subject" in before and not before & WORKSPACE_INDEXES
    async with running_gateway(tmp_path, config={"audit": store}) as gw:
        status, page = await get(gw, "/audit/v1/events", user="alice", limit="5")
        assert status == 200 and page["total"] == 2 * ALICE
    after = indexes() if store["store"].startswith("sqlite") else await pg_indexes()
    assert WORKSPACE_INDEXES <= after and "audit_records_subject" not in after


def test_a_persons_first_page_and_total_are_index_range_scans_on_sqlite(tmp_path: Path) -> None:
    """No timing asserted: the query plan of the list's page and total (as the API builds
    them for user=alice with reads hidden) walks the (subject, seq, event) index, newest first,
    with no sort and no table scan."""
    import asyncio
    import dataclasses

    from pep.audit.pages import apply_cursor, encode_cursor
    from pep.audit.query import AuditQuery

    asyncio.run(fill({"store": f"sqlite:///{tmp_path / 'audit.db'}"}, tmp_path / "gw-data"))
    q = AuditQuery(user="alice", subjects=("alice",), hide_reads=True, order="desc", limit=51)
    with sqlite3.connect(tmp_path / "audit.db") as conn:
        for query in (q, apply_cursor(q, encode_cursor(q, 100))):
            where, params = query.where("sqlite")
            for sql in (f"SELECT * FROM audit_records WHERE {where} ORDER BY seq DESC LIMIT 51",
                        f"SELECT COUNT(*) FROM audit_records WHERE {where}"):
                plan = " | ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
                assert "USING COVERING INDEX audit_records_person" in plan or (
                    "USING INDEX audit_records_person" in plan), plan
                assert "TEMP B-TREE" not in plan and "SCAN audit_records" not in plan, plan
        deny = dataclasses.replace(q, subjects=None, user=None, reason="model_not_allowed")
        where, params = deny.where("sqlite")
        plan = " | ".join(r[3] for r in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT * FROM audit_records WHERE {where} ORDER BY seq DESC", params))
        assert "audit_records_decision" in plan and "SCAN audit_records" not in plan, plan


async def test_only_the_workspace_files_are_served_and_all_with_the_strict_policy(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw, aiohttp.ClientSession() as s:
        for path, kind in (("/audit/", "text/html"), ("/audit/app.js", "text/javascript"),
                           ("/audit/views/records.js", "text/javascript"),
                           ("/audit/vendor/uplot/uPlot.esm.js", "text/javascript"),
                           ("/audit/vendor/uplot/uPlot.min.css", "text/css")):
            resp = await s.get(gw.url + path)
            assert resp.status == 200 and resp.content_type == kind, path
            assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
            assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        for path in ("/audit/vendor/README.md", "/audit/vendor/uplot/LICENSE",
                     "/audit/views/../../api.py", "/audit/vendor/uplot/..",
                     "/audit/a/b/c/d.js", "/audit/nothing.js"):
            resp = await s.get(gw.url + path)
            assert resp.status == 404, path
        html = await (await s.get(gw.url + "/audit/")).text()
        assert "<script>" not in html and "style=" not in html
