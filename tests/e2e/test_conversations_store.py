"""Stored responses on every store kind: owner isolation, expiry, and replicas sharing one
PostgreSQL so a conversation continues on whichever gateway the next turn reaches."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import openai
import pytest

from idp.testing import running_idp
from pep.conversations import (
    ConversationSettings,
    ConversationStore,
    MemoryConversations,
    PostgresConversations,
    SqliteConversations,
    open_conversations,
)
from pep.audit.settings import AuditSettings
from tests.harness import running_gateway


@pytest.fixture
async def pg_schema(postgres_dsn: str) -> AsyncIterator[str]:
    name = f"conv_t_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    await conn.close()


async def _exercise(store: ConversationStore) -> None:
    await store.start()
    try:
        doc: dict[str, Any] = {"response": {"id": "resp_1"}, "history": [], "chain_length": 1}
        await store.put("resp_1", "iss\nalice", doc)
        assert await store.get("resp_1", "iss\nalice") == doc
        assert await store.get("resp_1", "iss\nbob") is None  # another owner: nothing
        assert await store.get("resp_1", "other-iss\nalice") is None  # same sub, other issuer
        assert await store.delete("resp_1", "iss\nbob") is False
        assert await store.get("resp_1", "iss\nalice") == doc
        assert await store.delete("resp_1", "iss\nalice") is True
        assert await store.get("resp_1", "iss\nalice") is None
        assert await store.delete("resp_1", "iss\nalice") is False
    finally:
        await store.close()


async def test_sqlite_store_isolates_owners(tmp_path: Path) -> None:
    await _exercise(SqliteConversations(tmp_path / "r.db", 3600))


async def test_memory_store_isolates_owners() -> None:
    await _exercise(MemoryConversations(3600))


@pytest.mark.postgres
async def test_postgres_store_isolates_owners(postgres_dsn: str, pg_schema: str) -> None:
    await _exercise(PostgresConversations(postgres_dsn, pg_schema, 3600))


async def test_expired_responses_are_gone(tmp_path: Path) -> None:
    store = SqliteConversations(tmp_path / "r.db", 1)
    await store.start()
    try:
        await store.put("resp_old", "o", {"x": 1})
        store._retention = -10  # noqa: SLF001 - write one already past its retention
        await store.put("resp_expired", "o", {"x": 2})
        assert await store.get("resp_old", "o") == {"x": 1}
        assert await store.get("resp_expired", "o") is None
    finally:
        await store.close()


def test_default_store_follows_the_audit_store(tmp_path: Path) -> None:
    pg = AuditSettings(store="postgresql://u@127.0.0.1:5432/x", pg_schema="audit_s")
    store = open_conversations(ConversationSettings(), pg, tmp_path)
    assert isinstance(store, PostgresConversations) and store._table == '"audit_s".regogate_responses'  # noqa: SLF001
    assert isinstance(open_conversations(ConversationSettings(), AuditSettings(), tmp_path),
                      SqliteConversations)


@pytest.mark.postgres
async def test_two_gateways_on_one_postgres_continue_each_others_conversations(
    tmp_path: Path, postgres_dsn: str, pg_schema: str
) -> None:
    config = {"audit": {"store": postgres_dsn, "pg_schema": pg_schema}}
    async with running_idp(tmp_path / "idp") as idp, \
            running_gateway(tmp_path / "a", config=config, idp=idp) as a, \
            running_gateway(tmp_path / "b", config=config, idp=idp) as b:
        one = await a.openai("alice").responses.create(model="mock-gpt", input="on replica a")
        two = await b.openai("alice").responses.create(model="mock-gpt", input="on replica b",
                                                       previous_response_id=one.id)
        assert two.previous_response_id == one.id
        assert (await a.openai("alice").responses.retrieve(two.id)).output_text.endswith(
            "on replica b")
        with pytest.raises(openai.NotFoundError):
            await b.openai("bob").responses.retrieve(one.id)
