"""A stream's terminal event waits for its completion record: a client that saw ``[DONE]``
can rely on the completion being durable (kill -9 between the two lost it before)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest

from pep.audit.query import AuditQuery
from pep.audit.reader import SqliteAuditReader
from tests.fakes.openai_wire import stream_reply
from tests.fakes.server import FakeServer
from tests.harness import running_gateway


def config(fake: FakeServer, tmp: Path) -> dict[str, object]:
    return {"providers": {"p": {"kind": "openai", "base_url": fake.url, "api_key": "sk-test"}},
            "models": {"mock-gpt": {"provider": "p", "model": "gpt-upstream"}},
            "audit": {"store": f"sqlite:///{tmp / 'audit.db'}", "write_timeout_s": 0.3}}


async def test_stream_end_is_withheld_when_the_completion_cannot_be_made_durable(tmp_path: Path) -> None:
    reply = stream_reply(["one", "two", "three"])
    reply.chunk_delay_s = 0.5  # time to lock the database after the first chunk
    async with FakeServer([reply]) as fake, \
            running_gateway(tmp_path, config=config(fake, tmp_path)) as gw:
        client = gw.openai("alice")
        raw = await client.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
        rid = raw.headers["x-request-id"]
        stream = raw.parse()
        it = stream.__aiter__()
        await it.__anext__()  # the intent is durable: the provider is streaming
        blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the completion append cannot commit
        try:
            with pytest.raises(openai.APIError) as info:
                async for _ in it:
                    pass
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert "audit" in str(info.value).lower()
        assert rid.startswith("req_")


async def test_stream_ends_with_done_after_its_completion_is_durable(tmp_path: Path) -> None:
    async with FakeServer([stream_reply(["a", "b"])]) as fake, \
            running_gateway(tmp_path, config=config(fake, tmp_path)) as gw:
        client = gw.openai("alice")
        raw = await client.chat.completions.with_raw_response.create(
            model="mock-gpt", messages=[{"role": "user", "content": "hi"}], stream=True)
        rid = raw.headers["x-request-id"]
        text = "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
        # Read while the gateway still runs: the record was durable before [DONE] arrived.
        reader = SqliteAuditReader(tmp_path / "audit.db")
        events = [r.index["event"] for r in await reader.query(AuditQuery(request_id=rid))]
        await reader.close()
    assert text == "ab"
    assert events == ["request.intent", "request.completion"]


async def test_anthropic_message_stop_is_withheld_when_the_completion_cannot_be_made_durable(
    tmp_path: Path,
) -> None:
    import anthropic

    reply = stream_reply(["one", "two", "three"])
    reply.chunk_delay_s = 0.5
    async with FakeServer([reply]) as fake, \
            running_gateway(tmp_path, config=config(fake, tmp_path)) as gw:
        client = gw.anthropic("alice")
        events: list[str] = []
        blocker = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
        try:
            with pytest.raises(anthropic.APIError) as info:
                async with client.messages.stream(
                        model="mock-gpt", max_tokens=100,
                        messages=[{"role": "user", "content": "hi"}]) as stream:
                    async for ev in stream:
                        events.append(ev.type)
                        if len(events) == 1:  # the intent is durable: lock the store now
                            blocker.execute("BEGIN IMMEDIATE")
        finally:
            if blocker.in_transaction:
                blocker.execute("ROLLBACK")
            blocker.close()
        assert "message_stop" not in events
        assert "audit" in str(info.value).lower()
