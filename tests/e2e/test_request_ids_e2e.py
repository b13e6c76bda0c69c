"""Request ids end to end: the time-prefixed form (pep/request_ids.py) in x-request-id, and the
same id on the request's audit records."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.harness import running_gateway

ID_RE = re.compile(r"req_([0-9a-f]{12})[0-9a-f]{24}")


async def test_ids_carry_the_time_they_were_made_sort_in_order_and_join_the_trail(
        tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        before = time.time_ns() // 1_000_000
        ids = []
        for _ in range(3):
            resp = await client.chat.completions.with_raw_response.create(
                model="mock-gpt", messages=[{"role": "user", "content": "Hello"}])
            ids.append(resp.headers["x-request-id"])
        after = time.time_ns() // 1_000_000
        records = await gw.audit_records()
    stamps = []
    for rid in ids:
        m = ID_RE.fullmatch(rid)
        assert m is not None, rid
        stamps.append(int(m[1], 16))
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= after
    assert len(set(ids)) == 3
    for rid in ids:
        events = [r["event"] for r in records if r["request_id"] == rid]
        assert events == ["request.intent", "request.completion"], (rid, events)
        assert all(r["decision_id"] == rid for r in records if r["request_id"] == rid)
