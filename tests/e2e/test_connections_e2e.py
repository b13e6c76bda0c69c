"""Connection hygiene over raw sockets to the real gateway (server.limits: header-read and
body-read deadlines, keep-alive idle timeout, maximum connections). Deadlines are configured
small; the assertions are only "the connection is closed" / "the request is refused"."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.e2e.conftest import upstream_config
from tests.e2e.raw import closed_by_peer, connect, read_response, request_bytes
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, running_gateway

CHAT = orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]})


def limits(**values: Any) -> dict[str, Any]:
    # Everything not under test is generous, so only the limit under test can close anything.
    base = {"header_read_timeout_s": 60, "body_read_timeout_s": 60, "keepalive_timeout_s": 60}
    return {"server": {"limits": {**base, **values}}}


async def test_a_slow_header_client_is_disconnected_at_the_header_deadline(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), limits(header_read_timeout_s=0.5))
    async with running_gateway(tmp_path, config=config) as gw:
        reader, writer = await connect(gw.url)
        head = request_bytes("/v1/chat/completions", CHAT, {
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json"})
        closed = False
        for byte in head[:-4]:  # never completes the head
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            if await closed_by_peer(reader, within=0.05):
                closed = True
                break
        writer.close()
    assert closed, "the connection outlived the header deadline by the whole head"
    assert upstream.requests == []


async def test_a_slow_body_gets_408_and_its_connection_closed_at_the_body_deadline(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), limits(body_read_timeout_s=0.5))
    async with running_gateway(tmp_path, config=config) as gw:
        reader, writer = await connect(gw.url)
        data = request_bytes("/v1/chat/completions", CHAT, {
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json"})
        head_len = data.index(b"\r\n\r\n") + 4
        writer.write(data[:head_len + 1])  # the head and one byte of the body
        read = asyncio.create_task(read_response(reader))
        for byte in data[head_len + 1:]:
            if read.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.1)
        response = await read
        closed = await closed_by_peer(reader, within=20)
        writer.close()
        records = [r for r in await gw.audit_records()
                   if r["request_id"] == response.headers["x-request-id"]]
    assert response.status == 408
    assert response.json()["error"]["code"] == "body_timeout"
    assert closed
    assert upstream.requests == []
    assert [r["event"] for r in records] == ["request.rejected"]
    assert records[0]["who"]["subject"] == "alice"
    assert 0 < records[0]["extra"]["body_bytes"] < len(CHAT)


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, config=limits(keepalive_timeout_s=0.5)) as gw:
        reader, writer = await connect(gw.url)
        writer.write(request_bytes("/healthz", b"", {}, method="GET"))
        response = await read_response(reader)
        assert response.status == 200 and "close" not in response.headers.get("connection", "")
        closed = await closed_by_peer(reader, within=20)
        writer.close()
    assert closed


async def test_connections_beyond_the_maximum_evict_idle_ones_and_new_clients_are_served(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path, config=limits(max_connections=4)) as gw:
        idle = []
        for _ in range(12):  # idle keep-alive connections, one request each
            reader, writer = await connect(gw.url)
            writer.write(request_bytes("/healthz", b"", {}, method="GET"))
            assert (await read_response(reader)).status == 200
            idle.append((reader, writer))
        reader, writer = await connect(gw.url)
        writer.write(request_bytes("/v1/chat/completions", CHAT, {
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json"}))
        served = await read_response(reader)
        writer.close()
        still_open = [not await closed_by_peer(r, within=0.2) for r, _ in idle]
        for _, w in idle:
            w.close()
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    assert served.status == 200
    assert sum(still_open) <= 4  # at most max_connections were ever held
    assert "regogate_connections_evicted_total" in metrics
