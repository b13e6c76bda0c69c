"""External witnesses: every checkpoint also reaches the JSON-lines log, syslog and an HTTP
witness (all on loopback), and each copy verifies with the public key."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson
from aiohttp import web

from pep.audit.checkpoints import (
    DEFAULT_PUBLIC_KEY_NAME,
    Checkpoint,
    key_id,
    load_public_key,
    read_witness,
)
from pep.audit.factory import open_store
from pep.audit.reader import SqliteAuditReader
from pep.audit.witness import default_witness_dir

from .helpers import make_event, settings


async def test_every_checkpoint_reaches_log_syslog_and_http_witnesses(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def witness(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/witness", witness)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    try:
        store = open_store(settings(
            tmp_path, checkpoint_every_records=2, witness_log=tmp_path / "witness.jsonl",
            witness_syslog=f"127.0.0.1:{udp.getsockname()[1]}",
            witness_url=f"http://127.0.0.1:{port}/witness"), tmp_path)
        await store.start()
        for n in range(4):
            await store.append(make_event("alice", n))
        await store.close()
        datagrams = []
        while True:
            try:
                datagrams.append(udp.recv(65536))
            except BlockingIOError:
                break
    finally:
        udp.close()
        await runner.cleanup()
    reader = SqliteAuditReader(tmp_path / "audit.db")
    stored = {cp.hash for cp in await reader.checkpoints()}
    await reader.close()
    key = load_public_key(tmp_path / DEFAULT_PUBLIC_KEY_NAME)
    keys = {key_id(key): key}
    copies = {
        "log": read_witness(tmp_path / "witness.jsonl"),
        "dir": read_witness(default_witness_dir(tmp_path)),
        "http": [Checkpoint.from_json(b) for b in received],
        "syslog": [Checkpoint.from_json(d[d.index(b"{"):].rstrip(b"\x00\n")) for d in datagrams],
    }
    for name, cps in copies.items():
        assert {cp.hash for cp in cps} == stored, name
        assert all(cp.verify(keys) for cp in cps), name
    kinds = [cp.payload["kind"] for cp in copies["log"]]
    assert kinds[0] == "start" and kinds[-1] == "close" and kinds.count("checkpoint") == 2


async def test_a_dead_http_witness_never_blocks_appends(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens once closed
    store = open_store(settings(tmp_path, checkpoint_every_records=1,
                                witness_url=f"http://127.0.0.1:{dead}/w"), tmp_path)
    await store.start()
    await asyncio.wait_for(asyncio.gather(*(store.append(make_event("bob", n)) for n in range(20))), 10)
    await store.close()
    assert store.witness.failures > 0  # type: ignore[attr-defined]
    reader = SqliteAuditReader(tmp_path / "audit.db")
    stored = await reader.checkpoints()
    await reader.close()
    # The directory witness still got every checkpoint.
    assert len(read_witness(default_witness_dir(tmp_path))) == len(stored) >= 3


def test_jsonl_witness_line_that_does_not_parse_is_kept_as_a_bad_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_bytes(b'{"payload": {"seq": 1}, "signature": "x"}\n\nnot json\n')
    cps = read_witness(path)
    assert len(cps) == 2 and cps[1].payload["file"] == "w.jsonl:3"
    assert orjson.loads(cps[0].to_json())["payload"]["seq"] == 1
