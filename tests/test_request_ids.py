"""Request ids from the pooled CSPRNG (pep.request_ids): fresh, well-formed, never shared
between processes."""

from __future__ import annotations

import os
import re

import pytest

from pep.request_ids import ID_BYTES, POOL_IDS, IdPool


def test_ids_are_hex_of_the_documented_length_and_all_distinct() -> None:
    pool = IdPool()
    ids = [pool.next_hex() for _ in range(POOL_IDS * 3 + 7)]  # across several refills
    assert all(re.fullmatch(r"[0-9a-f]{%d}" % (2 * ID_BYTES), i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_every_id_is_a_distinct_slice_of_kernel_randomness(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_urandom(n: int) -> bytes:
        calls.append(n)
        return bytes((len(calls) * 7 + i) % 256 for i in range(n))

    monkeypatch.setattr(os, "urandom", fake_urandom)
    pool = IdPool()
    ids = [pool.next_hex() for _ in range(POOL_IDS + 1)]
    # One urandom call per POOL_IDS ids, and the ids are exactly its bytes, in order.
    assert calls == [ID_BYTES * POOL_IDS, ID_BYTES * POOL_IDS]
    assert "".join(ids[:POOL_IDS]) == fake_urandom_bytes(1)
    assert ids[POOL_IDS] == fake_urandom_bytes(2)[: 2 * ID_BYTES]


def fake_urandom_bytes(call: int) -> str:
    return bytes((call * 7 + i) % 256 for i in range(ID_BYTES * POOL_IDS)).hex()


def test_a_forked_process_does_not_reuse_the_parents_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = IdPool()
    first = pool.next_hex()
    parent_rest = [pool.next_hex() for _ in range(3)]
    child_pid = os.getpid() + 1
    monkeypatch.setattr(os, "getpid", lambda: child_pid)  # "after fork"
    child = [pool.next_hex() for _ in range(4)]
    assert not set(child) & {first, *parent_rest}
