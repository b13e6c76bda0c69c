"""The per-user heads tree matches RFC 9162 (2.1.1 hashing, 2.1.3 inclusion proofs)."""

from __future__ import annotations

import hashlib

import pytest

from pep.audit.merkle import inclusion_proof, leaf_hash, root_of, verify_inclusion


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 written out recursively (k = largest power of two < n)."""
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:]))


def heads(n: int) -> dict[str, str]:
    return {f'["iss","user{i:03d}"]': f"{i:064x}" for i in range(n)}


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert root_of({}) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13])
def test_root_equals_the_recursive_definition(n: int) -> None:
    h = heads(n)
    leaves = [leaf_hash(k, h[k]) for k in sorted(h)]
    assert root_of(h) == _mth(leaves).hex()


@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 8, 9, 13])
def test_every_leaf_has_a_valid_proof_and_no_other_leaf_fits_it(n: int) -> None:
    h = heads(n)
    root = root_of(h)
    for key in h:
        index, size, path = inclusion_proof(h, key)
        assert size == n
        assert verify_inclusion(leaf_hash(key, h[key]), index, size, path, root)
        assert not verify_inclusion(leaf_hash(key, "f" * 64), index, size, path, root)
        if n > 1:
            assert not verify_inclusion(leaf_hash(key, h[key]), (index + 1) % n, size, path, root)
            # (the tree size itself is bound by the signed ``users`` count, not by the path)
            assert not verify_inclusion(leaf_hash(key, h[key]), index, size, path[:-1], root)


def test_leaf_hash_is_domain_separated_from_nodes() -> None:
    assert leaf_hash("k", "h") == _h(b"\x00" + b'["k","h"]')


def test_proof_for_an_absent_user_is_refused() -> None:
    with pytest.raises(KeyError):
        inclusion_proof(heads(3), "nobody")


def test_out_of_range_index_or_bad_hex_never_verifies() -> None:
    h = heads(4)
    index, size, path = inclusion_proof(h, next(iter(h)))
    leaf = leaf_hash(next(iter(h)), h[next(iter(h))])
    assert not verify_inclusion(leaf, -1, size, path, root_of(h))
    assert not verify_inclusion(leaf, index, size, ["zz"], root_of(h))
