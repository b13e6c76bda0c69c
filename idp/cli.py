"""``python -m idp``: serve, token, rotate, users, jwks. NOT FOR PRODUCTION.

The gateway's own ``regogate token`` / ``regogate idp ...`` run these commands in a child
process, so ``pep`` never imports this package.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote_plus, urlencode

from idp.directory import CLIENT_CREDENTIALS, DEV_USER_GRANT, DirectoryError, load_directory
from idp.keys import DEFAULT_ALG, DEFAULT_GRACE_S, SUPPORTED_ALGS, KeyFileError, KeyRing
from idp.state import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    NonLoopbackError,
    current_audience,
    current_issuer,
    current_users_file,
    resolve_data_dir,
)
from idp.tokens import (
    DEFAULT_AUDIENCE,
    DEFAULT_CLIENT,
    DEFAULT_TTL_S,
    TokenIssuer,
    UnknownClientError,
    UnknownUserError,
)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more seconds")
    return value


def _common(p: argparse.ArgumentParser, *, users: bool = True) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="state directory (default: $REGOGATE_DATA_DIR or ./.regogate); keys live in <dir>/idp",
    )
    if users:
        p.add_argument(
            "--users", type=Path, default=None, help="users/clients YAML (default: bundled)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m idp",
        description="regogate development identity provider (NOT FOR PRODUCTION)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run discovery, JWKS, token and introspection endpoints")
    _common(serve)
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument(
        "--allow-non-loopback", action="store_true", help="bind a non-loopback address"
    )
    serve.add_argument("--audience", default=DEFAULT_AUDIENCE, help="default aud of access tokens")
    serve.add_argument(
        "--ttl", type=_positive, default=DEFAULT_TTL_S, help="token lifetime, seconds"
    )
    serve.add_argument(
        "--alg", choices=SUPPORTED_ALGS, default=DEFAULT_ALG, help="alg of the first key"
    )

    token = sub.add_parser("token", help="print an access token (the server need not be running)")
    _common(token)
    token.add_argument(
        "user", nargs="?", help="username; omit with --client for client credentials"
    )
    token.add_argument(
        "--client", default=None, help=f"client id (default for users: {DEFAULT_CLIENT})"
    )
    token.add_argument(
        "--audience", default=None, help=f"default: the server's, else {DEFAULT_AUDIENCE}"
    )
    token.add_argument("--ttl", type=_positive, default=DEFAULT_TTL_S)
    token.add_argument("--scope", default=None)
    token.add_argument("--id-token", action="store_true", help="mint an OIDC ID token instead")
    token.add_argument("--nonce", default=None, help="nonce for --id-token")
    token.add_argument("--issuer", default=None, help="override the issuer from state.json")
    token.add_argument(
        "--opaque",
        action="store_true",
        help="ask the running server for an opaque token (only it can introspect one)",
    )

    rotate = sub.add_parser("rotate", help="add a new active signing key")
    _common(rotate, users=False)
    rotate.add_argument("--alg", choices=SUPPORTED_ALGS, default=DEFAULT_ALG)
    rotate.add_argument(
        "--grace",
        type=_non_negative,
        default=DEFAULT_GRACE_S,
        help="seconds the previous key stays published",
    )
    rotate.add_argument("--remove-old", action="store_true", help="publish only the new key")

    users = sub.add_parser("users", help="list users and clients")
    _common(users)

    jwks = sub.add_parser("jwks", help="print the public JWKS")
    _common(jwks, users=False)
    return parser


def _cmd_serve(args: argparse.Namespace) -> int:
    # Imported here: aiohttp doubles start-up time, and `token` (run per test, per demo
    # command) never needs it.
    from idp.server import BANNER, start_server

    data_dir = resolve_data_dir(args.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    print(f"*** {BANNER} ***", file=sys.stderr, flush=True)

    async def run() -> None:
        server = await start_server(
            data_dir,
            host=args.host,
            port=args.port,
            users=args.users,
            allow_non_loopback=args.allow_non_loopback,
            audience=args.audience,
            ttl_s=args.ttl,
            alg=args.alg,
            access_log=True,
        )
        print(f"issuer {server.issuer}  (keys in {data_dir / 'idp'})", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):  # not on Windows
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.close()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    data_dir = resolve_data_dir(args.data_dir)
    if not args.user and not args.client:
        raise SystemExit("error: give a USER, or --client CLIENT for a client-credentials token")
    issuer = args.issuer or current_issuer(data_dir)
    users = args.users or current_users_file(data_dir)
    audience = args.audience or current_audience(data_dir) or DEFAULT_AUDIENCE
    tokens = TokenIssuer(
        KeyRing(data_dir), load_directory(users), issuer, audience=audience, ttl_s=args.ttl
    )
    client = args.client or DEFAULT_CLIENT
    if args.opaque:
        form = {"grant_type": DEV_USER_GRANT, "username": args.user} if args.user else {}
        print(_opaque_from_server(tokens, client, form or {"grant_type": CLIENT_CREDENTIALS}))
    elif args.id_token:
        if not args.user:
            raise SystemExit("error: --id-token needs a USER")
        print(tokens.id_token(args.user, client=client, nonce=args.nonce))
    elif args.user:
        print(tokens.user_token(args.user, client=client, scope=args.scope))
    else:
        print(tokens.service_token(client, scope=args.scope))
    return 0


def _opaque_from_server(tokens: TokenIssuer, client_id: str, form: dict[str, str]) -> str:
    client = tokens.client(client_id)
    if client.secret is None:
        raise IdpUnavailableError(f"client {client_id!r} is public: it cannot ask for tokens")
    body = urlencode({**form, "token_format": "opaque", "audience": tokens.audience}).encode()
    credentials = base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(client.secret)}".encode())
    request = urllib.request.Request(
        f"{tokens.issuer}/token",
        data=body,
        headers={
            "Authorization": f"Basic {credentials.decode()}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(json.load(resp)["access_token"])
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise IdpUnavailableError(f"the dev IdP refused: {exc.code} {detail}") from exc
    except (OSError, ValueError, KeyError) as exc:
        raise IdpUnavailableError(
            f"no dev IdP answering at {tokens.issuer} ({exc}); opaque tokens live in the "
            "running server: start `python -m idp serve` first"
        ) from exc


def _cmd_rotate(args: argparse.Namespace) -> int:
    ring = KeyRing(resolve_data_dir(args.data_dir), alg=args.alg)
    ring.snapshot()  # a first key must exist to be rotated out
    kid = ring.rotate(alg=args.alg, grace_s=args.grace, remove_old=args.remove_old)
    published = [k.kid for k in ring.snapshot().published]
    print(json.dumps({"active": kid, "published": published}))
    return 0


def _cmd_users(args: argparse.Namespace) -> int:
    directory = load_directory(args.users)
    for user in directory.users.values():
        print(json.dumps({"user": user.username, **user.claims()}))
    for client in directory.clients.values():
        print(json.dumps({"client": client.client_id, "grant_types": list(client.grant_types)}))
    return 0


def _cmd_jwks(args: argparse.Namespace) -> int:
    print(json.dumps(KeyRing(resolve_data_dir(args.data_dir)).snapshot().jwks, indent=2))
    return 0


class IdpUnavailableError(Exception):
    pass


COMMANDS = {
    "serve": _cmd_serve,
    "token": _cmd_token,
    "rotate": _cmd_rotate,
    "users": _cmd_users,
    "jwks": _cmd_jwks,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (
        DirectoryError,
        KeyFileError,
        NonLoopbackError,
        UnknownUserError,
        UnknownClientError,
        IdpUnavailableError,
        OSError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
