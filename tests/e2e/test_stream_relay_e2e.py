"""The stream relay's bytes: what the client receives is exactly the dialect's encoding of
the upstream's chunks, event for event, however the upstream's reads fall (the relay writes
the chunks of one read together), and what was relayed before an upstream failure reaches
the client before the error event."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.conftest import upstream_config
from tests.fakes.openai_wire import SSE, chunk, stream_chunks
from tests.fakes.server import FakeServer, Reply
from tests.harness import Gateway, deep_merge, running_gateway

HELLO = [{"role": "user", "content": "Hello"}]
WORDS = ["Hello", " from", " one", " read", "."]


def frames(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks]


def expected(chunks: list[dict[str, Any]]) -> bytes:
    """The client's bytes: each chunk with the model the client asked for, the usage-only
    chunk dropped (the client did not ask for usage), then [DONE]."""
    out = [{**c, "model": "mock-gpt"} for c in chunks if c.get("choices")]
    return b"".join(frames(out)) + b"data: [DONE]\n\n"


async def raw_stream(gw: Gateway) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {gw.token('alice')}"}
    body = {"model": "mock-gpt", "messages": HELLO, "stream": True}
    async with aiohttp.ClientSession() as s, \
            s.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers) as r:
        return r.status, r.headers["content-type"], await r.read()


async def completion_record(gw: Gateway) -> dict[str, Any]:
    for _ in range(200):
        events = await gw.audit_records()
        if events and events[-1]["event"] == "request.completion":
            return events[-1]
        await asyncio.sleep(0.02)
    raise AssertionError("no completion record")


@pytest.mark.parametrize("output_decision", [True, False])
@pytest.mark.parametrize("one_read", [True, False])
async def test_the_client_gets_the_upstream_events_byte_for_byte(
    tmp_path: Path, output_decision: bool, one_read: bool,
) -> None:
    chunks = stream_chunks(WORDS)
    wire = frames(chunks) + [b"data: [DONE]\n\n"]
    # The whole stream in one write (the relay sees every event in one read), or one event
    # per write, apart in time.
    reply = (Reply(200, headers=SSE, chunks=[b"".join(wire)]) if one_read
             else Reply(200, headers=SSE, chunks=wire, chunk_delay_s=0.01))
    async with FakeServer(lambda rec: reply) as up:
        config = deep_merge(upstream_config(up), {"policy": {"output_decision": output_decision}})
        async with running_gateway(tmp_path, config=config) as gw:
            status, ctype, data = await raw_stream(gw)
            record = await completion_record(gw)
    assert (status, ctype) == (200, "text/event-stream")
    assert data == expected(chunks)
    assert record["outcome"]["status"] == 200
    assert record["extra"]["delivered_chars"] == len("".join(WORDS))


@pytest.mark.parametrize("output_decision", [True, False])
async def test_what_was_relayed_before_an_upstream_failure_comes_before_the_error_event(
    tmp_path: Path, output_decision: bool,
) -> None:
    first = [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi "})]
    broken = json.dumps({"error": {"message": "boom", "type": "server_error", "code": None}})
    # The first two events in one read, the provider's in-band error in the next.
    reply = Reply(200, headers=SSE, chunks=[b"".join(frames(first)),
                                            f"data: {broken}\n\n".encode()],
                  chunk_delay_s=0.05)
    async with FakeServer(lambda rec: reply) as up:
        config = deep_merge(upstream_config(up), {"policy": {"output_decision": output_decision}})
        async with running_gateway(tmp_path, config=config) as gw:
            status, _, data = await raw_stream(gw)
            record = await completion_record(gw)
    sent = frames([{**c, "model": "mock-gpt"} for c in first])
    assert status == 200
    # With the output check on, "Hi " may still be held (unchecked) when the error arrives,
    # and held text is never released by an upstream failure; without it, both events are
    # relayed at once. Either way: a prefix of the upstream's events, byte for byte, then
    # exactly one error event, and the audit counts exactly the text that was delivered.
    n = len(sent) if not output_decision else max(
        k for k in range(len(sent) + 1) if data.startswith(b"".join(sent[:k])))
    if not output_decision:
        assert data.startswith(b"".join(sent))
    assert n >= 1  # the role chunk carries no text: it is never held
    relayed = b"".join(sent[:n])
    error = data[len(relayed):]
    assert error.startswith(b"data: ") and error.endswith(b"\n\n") and error.count(b"\n\n") == 1
    assert orjson.loads(error[6:])["error"]["code"] == "upstream_unavailable"
    assert record["outcome"]["error_code"] == "upstream_unavailable"
    delivered = "".join(c["choices"][0]["delta"].get("content", "") for c in first[:n])
    assert record["extra"]["delivered_chars"] == len(delivered)
