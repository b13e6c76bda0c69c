"""``regogate`` command line: serve, token, idp, policy, audit, usage, config.

``token`` and ``idp`` run ``python -m idp`` in a child process: the gateway package never
imports the dev IdP, so nothing in ``pep`` can take a shortcut around token verification.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pep.config import ConfigError, Settings, load_settings
from pep.settings_base import masked


class CliError(Exception):
    """A start-up problem the operator can fix: printed as one line, exit code 2."""


def data_dir_default() -> Path:
    return Path(os.environ.get("REGOGATE_DATA_DIR", ".regogate"))


def _exec_idp(args: list[str]) -> int:
    return subprocess.call([sys.executable, "-m", "idp", *args])


def _discovery_issuer(url: str) -> str | None:
    try:
        with urllib.request.urlopen(f"{url}/.well-known/openid-configuration", timeout=1) as r:
            import json

            doc = json.loads(r.read())
            return doc.get("issuer") if isinstance(doc, dict) else None
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _jwks_kids(doc: Any) -> set[str]:
    keys = doc.get("keys") if isinstance(doc, dict) else None
    return {k["kid"] for k in keys or [] if isinstance(k, dict) and isinstance(k.get("kid"), str)}


def _served_kids(issuer: str) -> set[str]:
    import json

    try:
        with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2) as r:
            jwks_uri = json.loads(r.read()).get("jwks_uri", f"{issuer}/jwks")
        with urllib.request.urlopen(jwks_uri, timeout=2) as r:
            return _jwks_kids(json.loads(r.read()))
    except (OSError, urllib.error.URLError, ValueError, AttributeError):
        return set()


def _local_kids(data_dir: Path) -> set[str]:
    import json

    out = subprocess.run([sys.executable, "-m", "idp", "jwks", "--data-dir", str(data_dir)],
                         capture_output=True, check=False)
    try:
        return _jwks_kids(json.loads(out.stdout)) if out.returncode == 0 else set()
    except ValueError:
        return set()


def start_dev_idp(data_dir: Path, port: int) -> tuple[str, subprocess.Popen[bytes] | None]:
    """Start the dev IdP and wait for discovery; reuse one already on the port only when it
    publishes the keys of this data directory (``regogate token`` signs with those keys, so
    any other IdP's tokens would be refused by this gateway)."""
    issuer = f"http://127.0.0.1:{port}"
    if _discovery_issuer(issuer) == issuer:
        served, local = _served_kids(issuer), _local_kids(data_dir)
        if local and local <= served:
            return issuer, None
        raise CliError(
            f"a dev IdP that this serve did not start is already listening on {issuer}, and it"
            f" does not publish the signing keys of {data_dir} (tokens from `regogate token`"
            " would be refused): stop it, or use another port with --idp-port,"
            " or pass the same --data-dir it was started with")
    proc = subprocess.Popen(
        [sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", str(data_dir)],
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CliError(f"the dev IdP exited with code {proc.returncode}; is port {port} taken?"
                           " (try --idp-port)")
        if _discovery_issuer(issuer) == issuer:
            return issuer, proc
        time.sleep(0.1)
    proc.terminate()
    raise CliError("the dev IdP did not answer within 20 s")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # As aiohttp binds (reuse_address): a port left in TIME_WAIT by a killed process is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _banner(settings: Settings, *, embedded: bool, issuer: str | None) -> str:
    s = settings.server
    url = f"http://{s.host}:{s.port}"
    exe = Path(sys.argv[0])
    try:
        cmd = str(exe.resolve().relative_to(Path.cwd()))
    except ValueError:
        cmd = "regogate"
    lines = [f"regogate is listening on {url}"]
    if embedded:
        lines += [
            f"  identity : dev IdP {issuer} (development only) -- users alice, bob, carol, erin",
            f"  policy   : embedded Rego engine on {settings.policy.bundle}",
            f"  audit    : {masked(settings.audit.store or '')}",
            "  provider : offline mock; models mock-gpt (everyone), mock-gpt-admin (admins),"
            " mock-embed",
        ]
    lines += [
        "",
        "Call it from another terminal in this directory:",
        f"  TOKEN=$({shlex.quote(cmd)} token alice)",
        f"  curl -s {url}/v1/chat/completions -H \"Authorization: Bearer $TOKEN\" \\",
        "       -H 'Content-Type: application/json' \\",
        "       -d '{\"model\": \"mock-gpt\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'",
        "",
        "or with the official openai SDK (pip install openai):",
        "  from openai import OpenAI",
        f"  client = OpenAI(base_url=\"{url}/v1\", api_key=TOKEN)   # the user's token",
        "  client.chat.completions.create(model=\"mock-gpt\", messages=[{\"role\": \"user\", \"content\": \"Hi\"}])",
        "",
        f"Audit: {shlex.quote(cmd)} audit query --user alice      Stop: Ctrl-C",
    ]
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        return _serve(args)
    except (CliError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _settings_for_serve(args: argparse.Namespace) -> tuple[Settings, str | None,
                                                          subprocess.Popen[bytes] | None]:
    from pep.defaults import embedded_settings

    if args.config:
        if args.idp_port is not None or args.data_dir:
            flag = "--idp-port" if args.idp_port is not None else "--data-dir"
            raise CliError(f"{flag} applies to the embedded defaults only; with --config the"
                           " identity and data_dir come from the config file")
        settings = load_settings(Path(args.config))
        overrides: dict[str, Any] = {}
        if args.host:
            overrides["host"] = args.host
        if args.port is not None:
            overrides["port"] = args.port
        if overrides:
            settings = settings.model_copy(
                update={"server": settings.server.model_copy(update=overrides)})
        return settings, None, None
    data_dir = Path(args.data_dir) if args.data_dir else data_dir_default()
    data_dir.mkdir(parents=True, exist_ok=True)
    host, port = args.host or "127.0.0.1", 8080 if args.port is None else args.port
    if port and not _port_free(host, port):
        raise CliError(f"{host}:{port} is already in use (try --port)")
    idp_port = 9400 if args.idp_port is None else args.idp_port
    issuer, idp_proc = start_dev_idp(data_dir, idp_port)
    return (embedded_settings(data_dir=data_dir, issuer=issuer, host=host, port=port),
            issuer, idp_proc)


def _serve(args: argparse.Namespace) -> int:
    from pep.app import StartupError, create_app
    from pep.http.edge import run
    from pep.logs import setup_logging

    level = os.environ.get("REGOGATE_LOG_LEVEL", "INFO")
    fmt = os.environ.get("REGOGATE_LOG_FORMAT", "text")
    setup_logging(level, fmt)
    if args.workers > 1:
        return _serve_workers(args, level, fmt)
    settings, issuer, idp_proc = _settings_for_serve(args)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        app = create_app(settings)
        run(
            app,
            host=settings.server.host,
            port=settings.server.port,
            on_listening=lambda: print(_banner(settings, embedded=not args.config, issuer=issuer),
                                       flush=True),
        )
    except StartupError as exc:
        raise CliError(f"cannot start: {exc}") from exc
    except OSError as exc:
        raise CliError(f"cannot listen on {settings.server.host}:{settings.server.port}:"
                       f" {exc.strerror or exc}") from exc
    finally:
        if idp_proc is not None:
            idp_proc.terminate()
            idp_proc.wait(timeout=10)
    return 0


def _serve_workers(args: argparse.Namespace, level: str, fmt: str) -> int:
    from pep.workers import MAX_WORKERS, WorkersError, multiworker_problems, serve_workers

    if args.workers > MAX_WORKERS:
        raise CliError(f"--workers {args.workers}: at most {MAX_WORKERS}")
    if not args.config:
        raise CliError(
            f"--workers {args.workers} needs --config with audit.store postgresql://... and"
            " usage.store redis://... (the embedded defaults keep the audit trail in SQLite"
            " and the counters in memory, which only one process can own)")
    settings, _issuer, _proc = _settings_for_serve(args)
    problems = multiworker_problems(settings)
    if problems:
        raise CliError(f"--workers {args.workers}: {'; '.join(problems)}")

    def listening(pids: list[int], port: int) -> None:
        bound = settings.model_copy(
            update={"server": settings.server.model_copy(update={"port": port})})
        print(_banner(bound, embedded=False, issuer=None).replace(
            "regogate is listening on",
            f"regogate ({len(pids)} workers, pids {' '.join(map(str, pids))}) is listening on",
            1), flush=True)

    try:
        return serve_workers(settings, args.workers, on_listening=listening, log_level=level,
                             log_format=fmt)
    except WorkersError as exc:
        raise CliError(str(exc)) from exc


def cmd_config_check(args: argparse.Namespace) -> int:
    from pep.configcheck import offline_problems, online_problems

    try:
        settings = load_settings(Path(args.file))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = offline_problems(settings)
    if args.online and not problems:
        problems = online_problems(settings)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    print(f"{args.file}: valid ({len(settings.identity.issuers)} issuer(s), "
          f"{len(settings.providers)} provider(s), {len(settings.models)} model(s))"
          + ("; issuers, policy engine and stores reachable" if args.online else ""))
    return 0


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {value!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    from pep.audit.cli import register as register_audit
    from pep.cache.cli import register as register_cache
    from pep.policy.cli import register as register_policy
    from pep.usage.cli import register as register_usage

    parser = argparse.ArgumentParser(prog="regogate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML config; without it: embedded defaults")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--data-dir", help="local state (default .regogate or $REGOGATE_DATA_DIR)")
    serve.add_argument("--idp-port", type=int, default=None,
                       help="dev IdP port (embedded defaults only; default 9400)")
    serve.add_argument("--workers", type=_positive_int, default=1,
                       help="gateway processes sharing the port (SO_REUSEPORT); above 1 the"
                       " config must put the audit on PostgreSQL and usage on Redis")
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print a dev IdP access token (python -m idp token)",
                           add_help=False)
    token.set_defaults(func=lambda a: _exec_idp(["token", *a.rest]))
    idp = sub.add_parser("idp", help="dev IdP commands (python -m idp ...)", add_help=False)
    idp.set_defaults(func=lambda a: _exec_idp(a.rest))

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("file")
    check.add_argument("--online", action="store_true",
                       help="also reach every issuer, the OPA sidecar and the stores")
    check.set_defaults(func=cmd_config_check)

    register_policy(sub)
    register_audit(sub)
    register_usage(sub)
    register_cache(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # token/idp pass everything through to the dev IdP's own parser.
    if argv and argv[0] in ("token", "idp"):
        return _exec_idp((["token"] if argv[0] == "token" else []) + argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
