"""Request ids (pep.request_ids): a millisecond prefix that never goes backwards, then 96 bits
from the pooled CSPRNG; fresh, well-formed, never shared between processes."""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

import pytest

from pep import request_ids
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


ID_RE = re.compile(r"req_([0-9a-f]{12})([0-9a-f]{24})")


def test_a_request_id_is_the_millisecond_clock_then_the_pools_random_slice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_764_633_600_123_456_789)
    pool, twin = IdPool(), IdPool()
    monkeypatch.setattr(os, "urandom", lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256))
    rid = pool.next_id()
    m = ID_RE.fullmatch(rid)
    assert m is not None, rid
    assert int(m[1], 16) == 1_764_633_600_123  # Unix ms, 12 hex digits, zero-padded
    assert m[2] == twin.next_hex()  # all 96 random bits are the CSPRNG's, as next_hex hands out


def test_request_ids_sort_in_the_order_they_were_made() -> None:
    pool = IdPool()
    made = []
    for _ in range(2_000):
        made.append(pool.next_id())
        if len(made) % 200 == 0:
            time.sleep(0.002)  # several milliseconds apart
    prefixes = [ID_RE.fullmatch(i)[1] for i in made]  # type: ignore[index]
    assert prefixes == sorted(prefixes) and len(set(prefixes)) > 1
    assert len(set(made)) == len(made)
    # Ids of different milliseconds sort by creation, whatever their random part.
    assert all(a < b for a, b in zip(made, made[1:]) if a[4:16] != b[4:16])


def test_a_clock_stepped_back_holds_the_prefix_instead_of_going_backwards(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([5_000_000_000, 4_000_000_000, 4_999_000_000, 6_000_000_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    pool = IdPool()
    prefixes = [int(pool.next_id()[4:16], 16) for _ in range(4)]
    assert prefixes == [5000, 5000, 5000, 6000]


def test_a_stepped_back_clock_does_not_make_ids_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 7_000_000_000)
    pool = IdPool()
    ids = [pool.next_id() for _ in range(POOL_IDS * 2)]
    assert len(set(ids)) == len(ids)  # same prefix: the random part alone keeps them apart


def test_ids_made_off_the_event_loop_have_the_same_form_and_their_own_monotonic_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []

    def token_hex(n: int) -> str:
        drawn.append(n)
        return f"{len(drawn):0{2 * n}x}"

    monkeypatch.setattr(secrets, "token_hex", token_hex)
    # The module's clock floor is process-wide: ids made earlier in this process (another
    # test, a gateway started in-process) leave the real time there.
    monkeypatch.setattr(request_ids, "_LAST_MS", [0])
    clock = iter([9_000_000_000, 8_000_000_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    first, second = request_ids.new_request_id(), request_ids.new_request_id()
    assert drawn == [ID_BYTES, ID_BYTES]  # 96 CSPRNG bits for each id
    assert ID_RE.fullmatch(first) and ID_RE.fullmatch(second)
    assert first[4:16] == second[4:16] == f"{9000:012x}"
    assert first[16:] == f"{1:024x}" and second[16:] == f"{2:024x}"


def test_every_id_the_gateway_makes_has_the_one_form() -> None:
    """The request path (pep.steps) and the HTTP layer's refusals (pep.http.edge) both use
    this module, so nothing else builds a request id."""
    root = Path(__file__).resolve().parents[1] / "pep"
    builders = [str(p.relative_to(root)) for p in root.rglob("*.py")
                if '"req_"' in p.read_text() and p.name != "request_ids.py"]
    assert builders == []
