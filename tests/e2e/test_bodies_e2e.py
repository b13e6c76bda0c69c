"""Bodies that cannot hurt the loop (pep/http/body.py, pep/http/edge.py): malformed compressed
bodies are 400, bombs 413, unknown encodings 415, many-chunk bodies 400 with the connection
closed -- each audited as request.rejected, nothing forwarded -- and well-formed compressed or
large bodies still work."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from pep.http.body import MAX_BODY_CHUNKS, MAX_GZIP_MEMBERS
from tests.e2e.conftest import upstream_config
from tests.e2e.raw import closed_by_peer, connect, read_response, request_bytes
from tests.fakes.server import FakeServer
from tests.harness import Gateway, running_gateway

CHAT = orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]})


async def post(gw: Gateway, body: bytes, **headers: str) -> tuple[int, dict[str, Any], str]:
    sent = {"Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json",
            **headers}
    async with aiohttp.ClientSession(auto_decompress=False) as s, s.post(
        gw.url + "/v1/chat/completions", data=body, headers=sent
    ) as r:
        return r.status, await r.json(), r.headers["x-request-id"]


async def rejection(gw: Gateway, rid: str) -> dict[str, Any]:
    events = [e for e in await gw.audit_records() if e["request_id"] == rid]
    assert [e["event"] for e in events] == ["request.rejected"], events
    return events[0]


HOSTILE: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("100k empty gzip members", gzip.compress(b"") * 100_000, {"Content-Encoding": "gzip"}, 400,
     "invalid_compressed_body"),
    ("gzip members beyond the cap", b"".join(gzip.compress(CHAT[i:i + 1])
                                             for i in range(MAX_GZIP_MEMBERS + 1)),
     {"Content-Encoding": "gzip"}, 400, "invalid_compressed_body"),
    ("not gzip at all", b"this is not gzip" * 10, {"Content-Encoding": "gzip"}, 400,
     "invalid_compressed_body"),
    ("truncated gzip", gzip.compress(CHAT)[:-12], {"Content-Encoding": "gzip"}, 400,
     "invalid_compressed_body"),
    ("corrupt deflate", zlib.compress(CHAT)[:4] + b"\xff" * 40, {"Content-Encoding": "deflate"},
     400, "invalid_compressed_body"),
    ("brotli", b"\x1b\x00\x00", {"Content-Encoding": "br"}, 415, "unsupported_content_encoding"),
    ("stacked encodings", gzip.compress(gzip.compress(CHAT)), {"Content-Encoding": "gzip, gzip"},
     415, "unsupported_content_encoding"),
    ("gzip bomb", gzip.compress(b" " * (8 * 1024 * 1024) + CHAT), {"Content-Encoding": "gzip"},
     413, "payload_too_large"),
    ("deflate bomb", zlib.compress(b" " * (8 * 1024 * 1024) + CHAT),
     {"Content-Encoding": "deflate"}, 413, "payload_too_large"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
async def test_a_hostile_compressed_body_is_refused_and_audited(
    tmp_path: Path, upstream: FakeServer, case: tuple[str, bytes, dict[str, str], int, str]
) -> None:
    _, body, headers, status, code = case
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        got, doc, rid = await post(gw, body, **headers)
        record = await rejection(gw, rid)
    assert (got, doc["error"]["code"]) == (status, code), doc
    assert doc["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []
    assert record["extra"]["reason"] == code and record["who"]["subject"] == "alice"
    if status != 415:
        assert record["extra"]["body_bytes"] == len(body)


@pytest.mark.parametrize("encoding,encode", [
    ("gzip", gzip.compress), ("deflate", zlib.compress),
    ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, as some clients send it
])
async def test_a_well_formed_compressed_body_is_decoded_and_forwarded(
    tmp_path: Path, upstream: FakeServer, encoding: str, encode: Any
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        status, doc, _ = await post(gw, encode(CHAT), **{"Content-Encoding": encoding})
    assert status == 200, doc
    (sent,) = upstream.requests
    assert orjson.loads(sent.body)["messages"] == [{"role": "user", "content": "hello"}]


def chunked(body: bytes, size: int) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                   for i in range(0, len(body), size))
    return out + b"0\r\n\r\n"


async def test_a_body_of_200k_one_byte_chunks_is_refused_and_its_connection_closed(
    tmp_path: Path, upstream: FakeServer
) -> None:
    pad = orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}],
                        "user": "x" * 200_000})
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        reader, writer = await connect(gw.url)
        writer.write(request_bytes("/v1/chat/completions", chunked(pad, 1), {
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}))
        response = await read_response(reader)
        closed = await closed_by_peer(reader, within=20)
        writer.close()
        record = await rejection(gw, response.headers["x-request-id"])
    assert response.status == 400 and response.json()["error"]["code"] == "too_many_chunks"
    assert closed
    assert upstream.requests == []
    assert record["extra"]["reason"] == "too_many_chunks"
    assert record["extra"]["body_bytes"] >= MAX_BODY_CHUNKS  # read no further than the cap


async def test_a_chunked_body_in_ordinary_chunks_is_accepted(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        reader, writer = await connect(gw.url)
        writer.write(request_bytes("/v1/chat/completions", chunked(CHAT, 16), {
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}))
        response = await read_response(reader)
        writer.close()
    assert response.status == 200, response.body
    assert len(upstream.requests) == 1


async def test_broken_chunk_framing_is_a_400_with_the_connection_closed(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        reader, writer = await connect(gw.url)
        writer.write(request_bytes("/v1/chat/completions", b"5\r\n{\"mod\r\nzz\r\n", {
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}))
        response = await read_response(reader)
        closed = await closed_by_peer(reader, within=20)
        writer.close()
        records = [r for r in await gw.audit_records()
                   if r["request_id"] == response.headers["x-request-id"]]
    assert response.status == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert closed
    assert upstream.requests == []
    assert [r["event"] for r in records] == ["request.rejected"]


async def test_a_large_read_is_parsed_in_slices_and_the_request_still_succeeds(
    tmp_path: Path, upstream: FakeServer
) -> None:
    # One big write reaches the gateway as reads far larger than a parse slice; each read is
    # parsed a slice per event-loop turn (other connections run in between).
    body = orjson.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}],
                         "user": "u" * (700 * 1024)})
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        status, doc, _ = await post(gw, body)
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    assert status == 200, doc
    assert orjson.loads(upstream.requests[0].body)["user"] == "u" * (700 * 1024)
    sliced = [line for line in metrics.splitlines()
              if line.startswith("regogate_parse_sliced_reads_total ")]
    assert sliced and float(sliced[0].split()[1]) >= 1


async def test_an_unauthenticated_many_chunk_body_is_not_parsed_after_the_401(
    tmp_path: Path, upstream: FakeServer
) -> None:
    # The 401 is sent before the body is read; the rest of the body is then discarded unparsed
    # and the connection closed (after a short linger), not lingered on by the HTTP parser.
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        reader, writer = await connect(gw.url)
        writer.write(request_bytes("/v1/chat/completions", chunked(b"x" * 400_000, 1), {
            "Content-Type": "application/json", "Transfer-Encoding": "chunked"}))
        response = await read_response(reader)
        closed = await closed_by_peer(reader, within=6)
        writer.close()
    assert response.status == 401
    assert closed
    assert upstream.requests == []
