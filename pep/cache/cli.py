"""``regogate cache``: entry counts and sizes, and purges by user, team or model.

Two ways to reach the cache:

- through a running gateway (``--url``, or ``--token``/``$REGOGATE_TOKEN`` with the address
  from ``--config``): ``POST /cache/v1/purge`` / ``GET /cache/v1/stats``, authorised by the
  policy as ``cache.admin`` and audited (``cache.purge``). The only way to reach the
  in-memory store, and the way that also empties the gateway's semantic index at once;
- straight from the store named by the config (SQLite under the data dir, or Redis), for
  operators holding the store. That purge reaches running gateways too: Redis entries and
  the shared vector log are seen by every replica, and a gateway on SQLite drops its
  in-process LRU at its next lookup (``cache_meta.purge_seq``).

``--user`` removes every entry that person filled, in any scope (offboarding, right to
erasure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
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
    p.add_argument("--config", help="gateway YAML config (its cache store, data dir, address)")
    p.add_argument("--data-dir", type=Path, help="data dir (default: from --config, else "
                   "$REGOGATE_DATA_DIR or .regogate)")
    p.add_argument("--url", help="a running gateway's base URL: go through its admin API")
    p.add_argument("--token", help="bearer token the policy allows cache.admin (default: "
                   "$REGOGATE_TOKEN); with it, the gateway of --config is asked")


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


def _gateway(args: argparse.Namespace) -> tuple[str, str] | None:
    """(base URL, token) when the command goes through a running gateway, else None."""
    token = args.token or os.environ.get("REGOGATE_TOKEN")
    memory = False
    url = args.url
    if args.config and (url is None or token is None):
        from pep.config import ConfigError, load_settings

        try:
            full = load_settings(Path(args.config))
        except ConfigError as exc:
            raise CacheCliError(str(exc)) from exc
        memory = full.cache.store == "memory"
        if url is None and (token or memory):
            url = f"http://{full.server.host}:{full.server.port}"
    if url is None:
        return None
    if not token:
        raise CacheCliError("a bearer token the policy allows cache.admin is required "
                            "(--token or REGOGATE_TOKEN), e.g. --token \"$(regogate token carol)\"")
    return url, token


def call_gateway(base_url: str, token: str, method: str, path: str,
                 body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, headers=headers,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise CacheCliError(f"{exc.code}: {_error_message(exc)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CacheCliError(f"cannot reach the gateway at {base_url}: {reason}") from exc
    except ValueError as exc:
        raise CacheCliError("the gateway answered with invalid JSON") from exc


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        err = json.loads(exc.read())["error"]
        return f"{err.get('message')} ({err.get('code')})"
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)


async def _through_gateway(args: argparse.Namespace, method: str, path: str,
                           body: dict[str, Any] | None = None) -> int | None:
    try:
        where = _gateway(args)
        if where is None:
            return None
        out = await asyncio.to_thread(call_gateway, *where, method, path, body)
    except CacheCliError as exc:
        print(f"regogate cache: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=2))
    return 0


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
    code = await _through_gateway(args, "GET", "/cache/v1/stats")
    if code is not None:
        return code

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
    body: dict[str, Any] = {"all": True} if args.all else {
        k: v for k, v in (("user", args.user), ("team", args.team), ("model", args.model))
        if v is not None}
    code = await _through_gateway(args, "POST", "/cache/v1/purge", body)
    if code is not None:
        return code

    async def action(store: Any) -> Any:
        return {"purged": await store.purge(what)}

    return await _with_store(args, action)
