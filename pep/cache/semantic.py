"""Semantic mode: a hit on a paraphrase of the last user message, everything else exact.

Entries are partitioned by the exact key of the request *without* its last user message
(model, deployments, the rest of the conversation, tools, parameters, scope value, policy
revision), so a paraphrase can only match an answer that was given to the same scope, under
the same policy, to the same conversation. Within a partition the last user message is
compared by cosine similarity of embeddings (``pep.cache.embedders``).

The index is in process and bounded per partition. Small partitions (the common case: one
person's repeated questions) are scanned exactly as one matrix product; a partition that
grows past ``HNSW_FROM`` vectors moves to a usearch HNSW index (docs/caching.md says why).
With a shared store (Redis) every vector added and every purge is also appended to a log in
that store, which each replica replays into its own index before it searches
(``pep.cache.vectorlog``). The entries themselves live in the store under their exact key, so
a purge or expiry there ends a semantic hit too: the lookup fetches the entry by its key,
and a vector whose entry is gone is a miss, never an answer.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pep.cache.stores import EntryMeta, Purge

_PLACEHOLDER = "\x00semantic-last-user-message"
HNSW_FROM = 4096  # vectors in one partition before it is searched through an HNSW graph

Vector = NDArray[np.float32]


def split_last_user_message(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(text of the last user message, body with it replaced by a placeholder), or None."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return None
    for i in range(len(messages) - 1, -1, -1):
        msg = messages[i]
        if isinstance(msg, dict) and msg.get("role") == "user":
            text = _text(msg.get("content"))
            if not text:
                return None
            rest = [*messages[:i], {**msg, "content": _PLACEHOLDER}, *messages[i + 1:]]
            return text, {**body, "messages": rest}
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        if any(not isinstance(p, dict) or p.get("type") != "text" for p in content):
            return ""  # images, audio, files: exact matching only
        return "\n".join(str(p.get("text", "")) for p in content)
    return ""


def normalised(values: Any) -> Vector | None:
    """A unit-length float32 vector, or None for anything that is not a finite non-zero
    1-d sequence of numbers."""
    try:
        vector = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    if vector.ndim != 1 or vector.size == 0 or not np.all(np.isfinite(vector)):
        return None
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else None


@dataclass(slots=True)
class _Item:
    label: int
    vector: Vector
    expires_at: float
    meta: EntryMeta | None


@dataclass(slots=True)
class _Partition:
    ndim: int
    items: OrderedDict[str, _Item] = field(default_factory=OrderedDict)  # key -> item, oldest first
    matrix: Vector | None = None  # exact scan: rows in ``keys`` order (rebuilt lazily)
    keys: list[str] = field(default_factory=list)
    hnsw: Any = None  # usearch Index once the partition holds HNSW_FROM vectors
    by_label: dict[int, str] = field(default_factory=dict)
    next_label: int = 0

    def add(self, key: str, vector: Vector, expires_at: float, meta: EntryMeta | None,
            limit: int) -> None:
        self.remove(key)
        item = _Item(self.next_label, vector, expires_at, meta)
        self.next_label += 1
        self.items[key] = item
        self.by_label[item.label] = key
        if self.hnsw is not None:
            self.hnsw.add(item.label, vector)
        elif len(self.items) >= HNSW_FROM:
            self._to_hnsw()
        self.matrix = None
        while len(self.items) > limit:
            self.remove(next(iter(self.items)))

    def remove(self, key: str) -> bool:
        item = self.items.pop(key, None)
        if item is None:
            return False
        del self.by_label[item.label]
        if self.hnsw is not None:
            self.hnsw.remove(item.label)
        self.matrix = None
        return True

    def _to_hnsw(self) -> None:
        from usearch.index import Index  # noqa: PLC0415 - only large partitions need it

        index = Index(ndim=self.ndim, metric="cos", dtype="f32")
        labels = np.array([i.label for i in self.items.values()], dtype=np.uint64)
        index.add(labels, np.stack([i.vector for i in self.items.values()]))
        self.hnsw = index

    def candidates(self, vector: Vector, count: int) -> list[tuple[str, float]]:
        """(key, cosine similarity), best first."""
        if self.hnsw is not None:
            found = self.hnsw.search(vector, count, threads=1)  # never the whole machine
            return [(self.by_label[int(label)], 1.0 - float(dist))
                    for label, dist in zip(found.keys, found.distances)
                    if int(label) in self.by_label]
        if self.matrix is None:
            self.keys = list(self.items)
            self.matrix = np.stack([self.items[k].vector for k in self.keys])
        sims = self.matrix @ vector
        if len(sims) > count:
            top = np.argpartition(-sims, count)[:count]
            order = top[np.argsort(-sims[top])]
        else:
            order = np.argsort(-sims)
        return [(self.keys[i], float(sims[i])) for i in order]


class SemanticIndex:
    """Partition -> vectors of the entries filled in it; bounded per partition and in
    partitions (least recently used partitions are dropped first)."""

    def __init__(self, *, max_per_partition: int, max_partitions: int) -> None:
        self._max_per_partition = max_per_partition
        self._max_partitions = max_partitions
        self._partitions: OrderedDict[str, _Partition] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(p.items) for p in self._partitions.values())

    def best(self, partition: str, vector: Vector, min_similarity: float, now: float
             ) -> tuple[str, float] | None:
        part = self._partitions.get(partition)
        if part is None or part.ndim != vector.size:
            return None
        self._partitions.move_to_end(partition)
        for key, sim in part.candidates(vector, 8):
            item = part.items.get(key)
            if item is None or item.expires_at <= now:
                part.remove(key)
                continue
            if sim < min_similarity:
                return None  # best first: nothing further is closer
            return key, round(min(sim, 1.0), 6)
        return None

    def add(self, partition: str, vector: Vector, key: str, expires_at: float,
            meta: EntryMeta | None = None) -> None:
        part = self._partitions.get(partition)
        if part is None or part.ndim != vector.size:
            part = self._partitions[partition] = _Partition(ndim=vector.size)
        self._partitions.move_to_end(partition)
        part.add(key, vector, expires_at, meta, self._max_per_partition)
        while len(self._partitions) > self._max_partitions:
            self._partitions.popitem(last=False)

    def purge(self, what: Purge) -> int:
        """Forget the vectors of entries the purge matches (the entries go from the store)."""
        if what.everything:
            n = len(self)
            self.clear()
            return n
        removed = 0
        for name in list(self._partitions):
            part = self._partitions[name]
            for key in [k for k, i in part.items.items()
                        if i.meta is not None and what.matches(i.meta)]:
                removed += part.remove(key)
            if not part.items:
                del self._partitions[name]
        return removed

    def clear(self) -> None:
        self._partitions.clear()
