"""``regogate cache``: entry counts and sizes, and purges by user, team or model.

Reads the store named by the config (SQLite under the data dir, or Redis). A purge reaches
running gateways too: Redis entries are shared, and a gateway on SQLite drops its in-process
LRU at its next lookup after a purge (``cache_meta.purge_seq``). ``--user`` removes every
entry that person filled, in any scope (offboarding, right to erasure).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from pep.cache.stores import CacheUnavailable, Purge, open_store


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("cache", help="response cache: stats and purge",
                              description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = p.add_subparsers(dest="cache_command", required=True)
    stats = sub.add_parser("stats", help="entries and bytes in the store")
    _common(stats)
    stats.set_defaults(func=cmd_stats)
    purge = sub.add_parser("purge", help="delete entries (filters combine with AND)")
    _common(purge)
    purge.add_argument("--user", help="every entry this user (sub) filled, in any scope")
    purge.add_argument("--team", help="entries filled by members of this team")
    purge.add_argument("--model", help="entries of this (client-facing) model")
    purge.add_argument("--all", action="store_true", help="every entry")
    purge.set_defaults(func=cmd_purge)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="gateway YAML config (its cache store and data dir)")
    p.add_argument("--data-dir", type=Path, help="data dir (default: from --config, else "
                   "$REGOGATE_DATA_DIR or .regogate)")


class CacheCliError(Exception):
    pass


def _store(args: argparse.Namespace) -> Any:
    from pep.cache.settings import CacheSettings

    settings, data_dir = CacheSettings(), Path(os.environ.get("REGOGATE_DATA_DIR", ".regogate"))
    if args.config:
        from pep.config import ConfigError, load_settings

        try:
            full = load_settings(Path(args.config))
        except ConfigError as exc:
            raise CacheCliError(str(exc)) from exc
        settings, data_dir = full.cache, full.server.data_dir
    if args.data_dir is not None:
        data_dir = args.data_dir
    if settings.store == "memory":
        raise CacheCliError("the cache store is 'memory': it lives inside the gateway process "
                            "(a restart empties it)")
    if settings.store == "sqlite" and not (data_dir / "cache.sqlite3").exists():
        raise CacheCliError(f"no cache database at {data_dir / 'cache.sqlite3'}")
    return open_store(settings.model_copy(update={"memory_max_bytes": 0}), data_dir)


async def _with_store(args: argparse.Namespace, action: Any) -> int:
    try:
        store = _store(args)
        await store.start()
        try:
            out = await action(store)
        finally:
            await store.close()
    except (CacheCliError, CacheUnavailable) as exc:
        print(f"regogate cache: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0


async def cmd_stats(args: argparse.Namespace) -> int:
    async def action(store: Any) -> Any:
        stats: dict[str, Any] = await store.stats()
        stats.pop("memory", None)  # this process's own (empty) LRU
        return stats

    return await _with_store(args, action)


async def cmd_purge(args: argparse.Namespace) -> int:
    what = Purge(user=args.user, team=args.team, model=args.model, everything=args.all)
    if not args.all and (args.user, args.team, args.model) == (None, None, None):
        print("regogate cache purge: give --user, --team, --model or --all", file=sys.stderr)
        return 2

    async def action(store: Any) -> Any:
        return {"purged": await store.purge(what)}

    return await _with_store(args, action)
