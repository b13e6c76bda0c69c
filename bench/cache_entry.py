#!/usr/bin/env python3
"""Memory per cached answer in the in-process LRU (docs/performance.md).

    .venv/bin/python bench/cache_entry.py [--entries 10000] [--answer-chars 600]

Fills a MemoryStore with entries shaped like the gateway's (a canonical chat.completion of
``--answer-chars`` characters plus its metadata) and reports, per entry, the stored blob size
(what ``cache.memory_max_bytes`` counts) and the Python heap actually used (tracemalloc):
blob + key + OrderedDict slot + metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import tracemalloc

import orjson

from pep.cache.stores import EntryMeta, MemoryStore


def entry(i: int, chars: int) -> bytes:
    body = {"id": f"chatcmpl-req_{i:024x}", "object": "chat.completion", "created": 1700000000,
            "model": "mock-gpt", "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": ("x" * (chars - 8)) + f"{i:08d}"}}]}
    return orjson.dumps({"v": 1, "body": body, "filled_by": f"req_{i:024x}",
                         "created": time.time(), "usage": [42, chars // 4, False],
                         "served": ["mock", "openai_compatible", "mock-gpt"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--answer-chars", type=int, default=600)
    args = parser.parse_args()
    blobs = [entry(i, args.answer_chars) for i in range(args.entries)]
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.entries)]
    metas = [EntryMeta(sub=f"user{i % 50}", issuer="https://idp.example.com", team="research",
                       model="mock-gpt", scope="user") for i in range(args.entries)]
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    lru = MemoryStore(max_bytes=1 << 40)
    for k, b, m in zip(keys, blobs, metas):
        lru.put_now(k, b, time.time() + 300, m)
    after = tracemalloc.take_snapshot()
    heap = sum(s.size_diff for s in after.compare_to(before, "filename"))
    # The blobs and keys were allocated before the snapshot; add them back.
    blob_bytes = sum(len(b) for b in blobs)
    total = heap + sum(b.__sizeof__() for b in blobs) + sum(k.__sizeof__() for k in keys) \
        + sum(m.__sizeof__() for m in metas)
    print(json.dumps({
        "entries": args.entries, "answer_chars": args.answer_chars,
        "blob_bytes_per_entry": round(blob_bytes / args.entries),
        "heap_bytes_per_entry": round(total / args.entries),
        "lru_accounting_bytes": lru.bytes,
    }, indent=2))


if __name__ == "__main__":
    main()
