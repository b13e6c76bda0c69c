"""Response cache settings (the ``cache:`` slice): where entries live and how big they get."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from pep.settings_base import Dsn, Frozen


class CacheSettings(Frozen):
    # Off switch for the whole feature; with it on, the policy's ``cache`` obligation still
    # decides per request (no obligation = no caching).
    enabled: bool = True
    # "sqlite" (in-process LRU in front of <data_dir>/cache.sqlite3), "memory" (LRU only,
    # lost on restart), or redis://host:6379/0, rediss://..., unix://... (shared by replicas).
    store: Dsn = "sqlite"
    redis_password: SecretStr | None = None
    redis_key_prefix: str = "regogate:cache:"
    timeout_s: float = Field(0.25, gt=0)
    # The in-process LRU, bounded in bytes of stored entries (sqlite and memory stores).
    memory_max_bytes: int = Field(64 * 1024 * 1024, ge=0)
    # Answers larger than this are not cached (they would evict many small ones).
    max_entry_bytes: int = Field(1024 * 1024, gt=0)
    # Upper bound on any policy's ttl_s.
    max_ttl_s: int = Field(86_400, gt=0)
    # SQLite: expired entries are swept, and the oldest dropped beyond this many entries.
    sqlite_max_entries: int = Field(100_000, gt=0)
    # Semantic mode's embeddings: "model" = the configured embeddings model below (reached
    # through the gateway's router); "local" = all-MiniLM-L6-v2 in process, from the weights
    # the ``[local-embeddings]`` extra installs (nothing downloaded). With "model" and no
    # model set, a policy's ``mode: semantic`` is served as exact matching.
    semantic_embedder: Literal["model", "local"] = "model"
    semantic_embeddings_model: str | None = None
    # Threads the local model may use (it runs on one worker thread beside the event loop).
    semantic_local_threads: int = Field(1, ge=1, le=64)
    # Used when the obligation sets no min_similarity (cosine similarity, 0..1).
    semantic_min_similarity: float = Field(0.92, ge=0, le=1)
    semantic_max_per_partition: int = Field(1000, gt=0)
    semantic_max_partitions: int = Field(10_000, gt=0)
    # Redis store: the shared log of vectors and purges every replica's index follows
    # (a Redis stream, trimmed to about this many records).
    semantic_log_max_len: int = Field(100_000, gt=0)

    @property
    def semantic(self) -> bool:
        return self.semantic_embedder == "local" or self.semantic_embeddings_model is not None

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str) -> str:
        if value in ("sqlite", "memory") or value.startswith(("redis://", "rediss://", "unix://")):
            return value
        raise ValueError("must be 'sqlite', 'memory' or a redis://, rediss:// or unix:// URL")
