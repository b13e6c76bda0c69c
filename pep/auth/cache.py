"""Verified-identity cache keyed by SHA-256 of the *whole* token (GUIDE.md 3.4).

The hot path: a token seen before costs one hash and one dict lookup. Entries live until the
token's ``exp`` (introspection results: also at most ``cache_max_s``), the cache is a bounded
LRU, and an entry remembers the key that verified it so a key the IdP has since removed
stops honouring its tokens (checked by the caller on every hit).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pep.principal import Principal


@dataclass(frozen=True, slots=True)
class CacheEntry:
    principal: Principal
    valid_until: float  # wall-clock seconds
    issuer_keys: Any = None  # IssuerKeys that verified it (None for introspection)
    key: Any = None  # the VerifyKey used


class TokenCache:
    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()

    def get(self, digest: bytes, now: float) -> CacheEntry | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry.valid_until:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return entry

    def put(self, digest: bytes, entry: CacheEntry) -> None:
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        self._entries.pop(digest, None)

    def __len__(self) -> int:
        return len(self._entries)
