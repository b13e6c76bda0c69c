"""The verified-identity cache (pep/auth/cache.py) as an LRU bounded to its size, for issue
18's mutation gate: a hit refreshes an entry's recency, a re-put replaces and refreshes it,
an expired entry is dropped when seen, and eviction takes the least recently used."""

from __future__ import annotations

from pep.auth.cache import CacheEntry, TokenCache
from pep.principal import Principal

FOREVER = 1e12


def entry(sub: str, valid_until: float = FOREVER) -> CacheEntry:
    return CacheEntry(Principal(sub=sub, issuer="https://idp"), valid_until=valid_until)


def subjects(cache: TokenCache, *digests: bytes) -> list[str | None]:
    """The subject cached under each digest (None: a miss), at time 0."""
    found = [cache.get(d, now=0.0) for d in digests]
    return [None if e is None else e.principal.sub for e in found]


def test_the_cache_holds_exactly_its_size_and_evicts_the_oldest_first() -> None:
    cache = TokenCache(max_entries=3)
    for d in (b"a", b"b", b"c"):
        cache.put(d, entry(d.decode()))
    assert len(cache) == 3
    cache.put(b"d", entry("d"))
    assert len(cache) == 3
    assert subjects(cache, b"a", b"b", b"c", b"d") == [None, "b", "c", "d"]


def test_a_hit_makes_an_entry_the_most_recently_used() -> None:
    cache = TokenCache(max_entries=2)
    cache.put(b"a", entry("a"))
    cache.put(b"b", entry("b"))
    assert subjects(cache, b"a") == ["a"]  # a is now newer than b
    cache.put(b"c", entry("c"))
    assert subjects(cache, b"b") == [None]
    assert subjects(cache, b"a", b"c") == ["a", "c"]


def test_putting_a_cached_digest_again_replaces_it_and_refreshes_its_recency() -> None:
    cache = TokenCache(max_entries=2)
    cache.put(b"a", entry("old"))
    cache.put(b"b", entry("b"))
    cache.put(b"a", entry("new"))
    assert len(cache) == 2
    cache.put(b"c", entry("c"))  # evicts b, the least recently put
    assert subjects(cache, b"a", b"b", b"c") == ["new", None, "c"]


def test_an_entry_is_valid_until_just_before_valid_until_and_dropped_when_seen_after() -> None:
    cache = TokenCache(max_entries=4)
    cache.put(b"t", entry("t", valid_until=100.0))
    cache.put(b"u", entry("u", valid_until=200.0))
    got = cache.get(b"t", now=99.999)
    assert got is not None and got.valid_until == 100.0
    assert cache.get(b"t", now=100.0) is None
    assert len(cache) == 1  # removed, not just hidden
    assert cache.get(b"t", now=0.0) is None  # and not served to an earlier clock either
    assert subjects(cache, b"u") == ["u"]


def test_an_expired_entry_frees_its_slot_for_a_new_one() -> None:
    cache = TokenCache(max_entries=2)
    cache.put(b"old", entry("old", valid_until=10.0))
    cache.put(b"keep", entry("keep"))
    assert cache.get(b"old", now=10.0) is None
    cache.put(b"new", entry("new"))
    assert subjects(cache, b"keep", b"new") == ["keep", "new"]


def test_a_discarded_digest_is_gone_and_discarding_a_missing_one_is_harmless() -> None:
    cache = TokenCache(max_entries=2)
    cache.put(b"a", entry("a"))
    cache.put(b"b", entry("b"))
    cache.discard(b"a")
    cache.discard(b"never-cached")
    assert len(cache) == 1
    assert subjects(cache, b"a", b"b") == [None, "b"]


def test_an_entry_remembers_what_verified_it() -> None:
    keys, key = object(), object()
    cache = TokenCache(max_entries=1)
    cache.put(b"a", CacheEntry(Principal(sub="a", issuer="i"), 5.0, keys, key))
    got = cache.get(b"a", now=1.0)
    assert got is not None and (got.issuer_keys, got.key) == (keys, key)
    assert entry("x").issuer_keys is None and entry("x").key is None
