"""The per-user heads tree: a Merkle tree (RFC 9162 section 2.1) over every subject's chain head.

Each checkpoint signs ``users_root``, the root of this tree as of the checkpoint's ``seq``, so
one signature commits to the last record of *every* user. An export of one user's records
carries an inclusion proof of her leaf: dropping her newest record (or any other) no longer
matches the signed head. The tree is the one certificate-transparency logs use:

    leaf  = SHA-256(0x00 || canonical_json([user_key, head_hash]))
    node  = SHA-256(0x01 || left || right)
    empty = SHA-256("")

Leaves are sorted by ``user_key`` (UTF-8 byte order); for n leaves the left subtree holds the
largest power of two smaller than n (equivalently: pair neighbours level by level, an odd last
node moves up unchanged). Proof verification is RFC 9162 section 2.1.3.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from pep.audit.records import canonical_json


def leaf_hash(user_key: str, head: str) -> bytes:
    return hashlib.sha256(b"\x00" + canonical_json([user_key, head])).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def sorted_leaves(heads: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted(heads.items(), key=lambda kv: kv[0].encode())


def _levels(leaves: list[bytes]) -> Iterable[list[bytes]]:
    level = leaves
    while len(level) > 1:
        yield level
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    yield level


def root_of(heads: Mapping[str, str]) -> str:
    """Hex root of the tree over ``{user_key: head_hash}``."""
    leaves = [leaf_hash(k, h) for k, h in sorted_leaves(heads)]
    if not leaves:
        return hashlib.sha256(b"").hexdigest()
    *_, top = _levels(leaves)
    return top[0].hex()


def inclusion_proof(heads: Mapping[str, str], user_key: str) -> tuple[int, int, list[str]]:
    """(leaf index, tree size, audit path as hex) for ``user_key``; KeyError if absent."""
    order = [k for k, _ in sorted_leaves(heads)]
    index = order.index(user_key) if user_key in heads else -1
    if index < 0:
        raise KeyError(user_key)
    leaves = [leaf_hash(k, heads[k]) for k in order]
    path: list[str] = []
    i = index
    for level in _levels(leaves):
        if len(level) == 1:
            break
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling].hex())
        i >>= 1
    return index, len(order), path


def verify_inclusion(leaf: bytes, index: int, size: int, path: list[str], root: str) -> bool:
    """RFC 9162 2.1.3.2: does ``path`` lead from ``leaf`` at ``index`` to ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    try:
        nodes = [bytes.fromhex(p) for p in path]
    except ValueError:
        return False
    for p in nodes:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root
