"""``regogate usage``: current counters by user, team and calling app.

Two ways to reach the counters, chosen so that nobody needs a second copy of the truth:

- through the gateway (default): ``GET /usage/v1/counters`` with a bearer token that the
  policy allows ``usage.read`` -- the only way to see the in-process (memory) store, and it
  works for Redis too;
- straight from Redis with ``--config`` naming a Redis store and no ``--url``: for operators
  who already hold the Redis credentials (no gateway or token needed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from pep.usage.counters import SCOPES
from pep.usage.windows import WINDOWS

DEFAULT_URL = "http://127.0.0.1:8080"
COLUMNS = ("scope", "id", "window", "requests", "prompt_tokens", "completion_tokens",
           "tokens", "cost_usd")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "usage", help="current usage counters by user, team and app",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--config", help="gateway YAML config (its server address, or Redis store)")
    p.add_argument("--url", help=f"gateway base URL (default: from --config, else {DEFAULT_URL})")
    p.add_argument("--token", help="bearer token allowed usage.read (default: $REGOGATE_TOKEN)")
    p.add_argument("--scope", choices=SCOPES)
    p.add_argument("--id", dest="ident", help="one user (sub), team or client_id")
    p.add_argument("--window", choices=WINDOWS)
    p.add_argument("--json", action="store_true", help="print JSON rows")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace) -> int:
    try:
        rows = await _rows(args)
    except UsageCliError as exc:
        print(f"regogate usage: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render_table(rows))
    return 0


class UsageCliError(Exception):
    pass


async def _rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = None
    if args.config:
        from pep.config import ConfigError, load_settings

        try:
            settings = load_settings(Path(args.config))
        except ConfigError as exc:
            raise UsageCliError(str(exc)) from exc
    if settings is not None and settings.usage.store != "memory" and not args.url:
        return await _from_store(settings.usage, args)
    url = args.url or (
        f"http://{settings.server.host}:{settings.server.port}" if settings else DEFAULT_URL
    )
    token = args.token or os.environ.get("REGOGATE_TOKEN")
    if not token:
        raise UsageCliError("a bearer token is required (--token or REGOGATE_TOKEN), e.g. "
                            "--token \"$(regogate token erin)\"")
    return await asyncio.to_thread(fetch_counters, url, token, args.scope, args.ident, args.window)


async def _from_store(usage: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    from pep.usage.tracker import UsageUnavailable, open_tracker

    tracker = open_tracker(usage)
    await tracker.start()
    try:
        return await tracker.counters(scope=args.scope, window=args.window, ident=args.ident)
    except UsageUnavailable as exc:
        raise UsageCliError(str(exc)) from exc
    finally:
        await tracker.close()


def fetch_counters(base_url: str, token: str, scope: str | None, ident: str | None,
                   window: str | None) -> list[dict[str, Any]]:
    query = {k: v for k, v in (("scope", scope), ("id", ident), ("window", window)) if v}
    url = f"{base_url.rstrip('/')}/usage/v1/counters"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise UsageCliError(f"{exc.code}: {_error_message(exc)}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageCliError(f"cannot reach the gateway at {base_url}: {reason}") from exc
    except ValueError as exc:
        raise UsageCliError("the gateway answered with invalid JSON") from exc
    rows = body.get("data") if isinstance(body, dict) else None
    if not isinstance(rows, list):
        raise UsageCliError("the gateway answered without a data list")
    return rows


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        err = json.loads(exc.read())["error"]
        return f"{err.get('message')} ({err.get('code')})"
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)


def render_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no usage in the current windows"
    cells = [list(COLUMNS)]
    for r in rows:
        line = [str(r.get(c, "")) for c in COLUMNS]
        line[-1] = f"{float(r.get('cost_usd') or 0):.6f}"
        if r.get("estimated_requests"):
            line[-1] += " (est.)"
        cells.append(line)
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    numeric = set(range(3, len(COLUMNS)))
    return "\n".join(
        "  ".join(c.rjust(w) if i in numeric else c.ljust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
        for row in cells
    )
