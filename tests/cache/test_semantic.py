"""The semantic index: the nearest vector of the same partition only, above the threshold,
live entries only; a partition past HNSW_FROM vectors is searched through usearch and finds
the same neighbour; purges by user/team/model forget exactly the matching vectors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pep.cache import semantic
from pep.cache.semantic import SemanticIndex, normalised
from pep.cache.stores import EntryMeta, Purge

ALICE = EntryMeta(sub="alice", issuer="https://idp", team="research", model="mock-gpt", scope="user")
BOB = EntryMeta(sub="bob", issuer="https://idp", team="sales", model="mock-gpt", scope="user")


def vec(*values: float) -> np.ndarray:
    v = normalised(list(values))
    assert v is not None
    return v


def index() -> SemanticIndex:
    return SemanticIndex(max_per_partition=1000, max_partitions=10)


def test_the_nearest_vector_above_the_threshold_is_found_and_below_it_nothing() -> None:
    ix, later = index(), time.time() + 60
    ix.add("p", vec(1, 0, 0), "france", later, ALICE)
    ix.add("p", vec(0.6, 0.8, 0), "spain", later, ALICE)
    hit = ix.best("p", vec(0.99, 0.141, 0), 0.95, time.time())
    assert hit is not None and hit[0] == "france" and 0.99 < hit[1] < 1.0
    assert ix.best("p", vec(0, 0, 1), 0.5, time.time()) is None


def test_another_partition_is_never_a_candidate_whatever_the_similarity() -> None:
    ix = index()
    ix.add("alice-partition", vec(1, 0, 0), "k", time.time() + 60, ALICE)
    assert ix.best("bob-partition", vec(1, 0, 0), 0.0, time.time()) is None


def test_an_expired_vector_is_dropped_and_the_next_live_one_answers() -> None:
    ix, now = index(), time.time()
    ix.add("p", vec(1, 0, 0), "old", now - 1, ALICE)
    ix.add("p", vec(0.9, 0.1, 0), "live", now + 60, ALICE)
    hit = ix.best("p", vec(1, 0, 0), 0.5, now)
    assert hit is not None and hit[0] == "live" and len(ix) == 1


def test_a_vector_of_another_dimension_finds_nothing() -> None:
    ix = index()
    ix.add("p", vec(1, 0, 0), "k", time.time() + 60, ALICE)
    assert ix.best("p", vec(1, 0, 0, 0), 0.0, time.time()) is None


def test_partitions_and_vectors_per_partition_are_bounded() -> None:
    ix = SemanticIndex(max_per_partition=2, max_partitions=2)
    later = time.time() + 60
    for n, key in enumerate(("a", "b", "c")):
        ix.add("p", vec(1, n, 0), key, later, ALICE)
    hit = ix.best("p", vec(1, 0, 0), 0.0, time.time())  # a's own vector: a was evicted
    assert hit is not None and hit[0] == "b" and len(ix) == 2
    ix.add("q", vec(1, 0, 0), "q1", later, ALICE)
    ix.add("r", vec(1, 0, 0), "r1", later, ALICE)  # p is the least recently used
    assert ix.best("p", vec(1, 2, 0), 0.0, time.time()) is None
    assert ix.best("r", vec(1, 0, 0), 0.9, time.time()) == ("r1", 1.0)


def test_a_large_partition_moves_to_usearch_hnsw_and_finds_the_same_neighbour() -> None:
    rng = np.random.default_rng(7)
    ix, later = SemanticIndex(max_per_partition=10_000, max_partitions=2), time.time() + 60
    vectors = [normalised(rng.standard_normal(32)) for _ in range(semantic.HNSW_FROM + 20)]
    for n, v in enumerate(vectors):
        assert v is not None
        ix.add("p", v, f"k{n}", later, ALICE if n % 2 else BOB)
    part = ix._partitions["p"]
    assert part.hnsw is not None and len(part.hnsw) == len(vectors)
    target = vectors[100]
    assert target is not None
    query = normalised(target + 0.01 * rng.standard_normal(32))
    assert query is not None
    hit = ix.best("p", query, 0.9, time.time())
    assert hit is not None and hit[0] == "k100"
    # a purge removes the purged person's vectors from the graph too
    assert ix.purge(Purge(user="bob")) == (len(vectors) + 1) // 2
    assert len(part.hnsw) == len(vectors) // 2
    assert ix.best("p", query, 0.9, time.time()) is None  # k100 was bob's


@pytest.mark.parametrize("what, left", [
    (Purge(user="alice"), {"b"}), (Purge(team="sales"), {"a"}),
    (Purge(model="mock-gpt"), set()), (Purge(everything=True), set()),
    (Purge(user="alice", team="sales"), {"a", "b"}),
])
def test_a_purge_forgets_exactly_the_matching_vectors(what: Purge, left: set[str]) -> None:
    ix, later = index(), time.time() + 60
    ix.add("p1", vec(1, 0), "a", later, ALICE)
    ix.add("p2", vec(1, 0), "b", later, BOB)
    ix.purge(what)
    found = {hit[0] for p in ("p1", "p2") if (hit := ix.best(p, vec(1, 0), 0.9, time.time()))}
    assert found == left


@pytest.mark.parametrize("bad", [[], [0.0, 0.0], ["x"], [float("nan"), 1.0], [[1.0]], None])
def test_vectors_that_are_not_finite_non_zero_numbers_are_refused(bad: object) -> None:
    assert normalised(bad) is None
