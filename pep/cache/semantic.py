"""Semantic mode: a hit on a paraphrase of the last user message, everything else exact.

Entries are partitioned by the exact key of the request *without* its last user message
(model, deployments, the rest of the conversation, tools, parameters, scope value, policy
revision), so a paraphrase can only match an answer that was given to the same scope, under
the same policy, to the same conversation. Within a partition the last user message is
compared by cosine similarity of embeddings from a configured embeddings model, reached
through the gateway's own router (the gateway's credentials, like any model call).

The index is in process (per replica) and bounded per partition; the entries themselves live
in the configured store under their exact key, so a purge or expiry there ends a semantic hit
too (the lookup fetches the entry by its exact key).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from pep.routing.outcome import RouteFailed

if TYPE_CHECKING:
    from pep.routing.router import Router

_PLACEHOLDER = "\x00semantic-last-user-message"


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


def _normalised(vector: list[float]) -> list[float] | None:
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm > 0 else None


class SemanticIndex:
    def __init__(self, router: Router, model: str, *, max_per_partition: int,
                 max_partitions: int) -> None:
        self._router = router
        self.model = model
        self._max_per_partition = max_per_partition
        self._max_partitions = max_partitions
        self._partitions: OrderedDict[str, list[tuple[list[float], str, float]]] = OrderedDict()

    async def embed(self, text: str, request_id: str) -> list[float] | None:
        """The unit-length embedding of ``text``; None when the embeddings model failed."""
        try:
            result = await self._router.embeddings({"model": self.model, "input": [text]},
                                                   self.model, request_id=request_id)
            vector = result.body["data"][0]["embedding"]
        except (RouteFailed, KeyError, IndexError, TypeError):
            return None
        if not isinstance(vector, list) or not all(isinstance(v, (int, float)) for v in vector):
            return None
        return _normalised([float(v) for v in vector])

    def best(self, partition: str, vector: list[float], min_similarity: float
             ) -> tuple[str, float] | None:
        entries = self._partitions.get(partition)
        if not entries:
            return None
        now = time.time()
        live = [e for e in entries if e[2] > now]
        if len(live) != len(entries):
            entries[:] = live
        best_key, best_sim = None, -1.0
        for other, key, _ in live:
            if len(other) != len(vector):
                continue
            sim = sum(a * b for a, b in zip(vector, other))
            if sim > best_sim:
                best_key, best_sim = key, sim
        if best_key is None or best_sim < min_similarity:
            return None
        return best_key, round(best_sim, 6)

    def add(self, partition: str, vector: list[float], key: str, expires_at: float) -> None:
        entries = self._partitions.setdefault(partition, [])
        self._partitions.move_to_end(partition)
        entries[:] = [e for e in entries if e[1] != key]
        entries.append((vector, key, expires_at))
        if len(entries) > self._max_per_partition:
            del entries[0]
        while len(self._partitions) > self._max_partitions:
            self._partitions.popitem(last=False)

    def clear(self) -> None:
        self._partitions.clear()
