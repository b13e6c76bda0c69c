"""``regogate policy test | eval | check | build | schema`` (wired by ``pep.cli`` via
``register``).

Exit codes: 0 success (eval: allowed), 1 failure (tests failed, check errors; eval: denied),
2 the command could not run (bad bundle, engine error, unusable signing key).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml

DEFAULT_BUNDLE = Path("policies")


def _default_users_file() -> Path:
    # Read as a data file: the gateway never imports the dev IdP.
    local = Path("idp/users.yaml")
    return local if local.is_file() else Path(__file__).resolve().parents[2] / "idp" / "users.yaml"


def cmd_test(args: argparse.Namespace) -> int:
    from pep.policy import testing
    from pep.policy.bundle import BundleError
    from pep.policy.engine import PolicyError

    try:
        runner, results = testing.run(Path(args.dir), engine=args.engine)
    except (BundleError, PolicyError, RuntimeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.verbose:
        print(f"# runner: {runner}")
    return 0 if testing.report(results, sys.stdout, verbose=args.verbose) else 1


def cmd_check(args: argparse.Namespace) -> int:
    from pep.policy.check import check

    report = check(Path(args.dir), args.decision)
    for w in report.warnings:
        print(f"warning: {w}")
    for e in report.errors:
        print(f"error: {e}")
    if report.ok:
        print(f"{args.dir}: ok (revision {report.revision})")
        return 0
    print(f"{args.dir}: {len(report.errors)} error(s)")
    return 1


def cmd_build(args: argparse.Namespace) -> int:
    from pep.policy.build import BuildError, build

    key: bytes | None = None
    if args.signing_key:
        try:
            key = Path(args.signing_key).read_bytes()
        except OSError as exc:
            print(f"error: cannot read signing key {args.signing_key}: {exc.strerror}",
                  file=sys.stderr)
            return 2
    try:
        result = build(Path(args.dir), Path(args.output), signing_key=key,
                       signing_alg=args.signing_alg, key_id=args.key_id)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signed = f", signed {args.signing_alg}" if result.signed else ""
    print(f"wrote {result.path} (revision {result.revision}, {len(result.files)} files{signed})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from pep.policy.schema import write

    for path in write(Path(args.out)):
        print(f"wrote {path}")
    return 0


def _user_attrs(args: argparse.Namespace) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if args.groups is None or args.teams is None:
        path = Path(args.users_file) if args.users_file else _default_users_file()
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            doc = {}
        attrs = dict((doc.get("users") or {}).get(args.user) or {})
        if not attrs and (args.groups is None or args.teams is None):
            raise SystemExit(f"error: user {args.user!r} not in {path}; pass --groups and --teams")
    groups = args.groups.split(",") if args.groups is not None else list(attrs.get("groups") or [])
    if args.teams is not None:
        teams = args.teams.split(",")
    else:
        team = attrs.get("team")
        teams = [team] if team else list(attrs.get("teams") or [])
    return {
        "sub": str(attrs.get("sub") or args.user),
        "email": attrs.get("email"),
        "name": attrs.get("name"),
        "groups": tuple(g for g in groups if g),
        "teams": tuple(t for t in teams if t),
        "roles": tuple(attrs.get("roles") or ()),
    }


def build_input(args: argparse.Namespace) -> dict[str, Any]:
    from pep.content import ContentInspector, ContentSettings
    from pep.policy.input import build_policy_input
    from pep.principal import Principal
    from pep.request import normalize_chat, normalize_embeddings

    attrs = _user_attrs(args)
    principal = Principal(issuer="regogate-cli", client_id="regogate-cli", **attrs)
    inspector = ContentInspector(ContentSettings())
    if args.api == "embeddings":
        req = normalize_embeddings(
            {"model": args.model, "input": args.prompt}, normalise_text=inspector.normalise
        )
    else:
        body: dict[str, Any] = {
            "model": args.model,
            "messages": [{"role": "user", "content": args.prompt}],
        }
        if args.max_tokens is not None:
            body["max_tokens"] = args.max_tokens
        req = normalize_chat(body, normalise_text=inspector.normalise, api=args.api)
    # The gateway's own inspection (every forwarded string, findings with locations).
    scan = inspector.scan_request(req.body, req.api, len(req.texts))
    req.texts = scan.texts
    doc = build_policy_input(
        principal,
        req,
        request_id=f"cli-{uuid.uuid4()}",
        source_ip=None,
        findings=scan.findings,
        usage={},
    )
    if args.api not in ("chat.completions", "messages", "embeddings"):
        doc["request"]["api"] = args.api
    return doc


async def cmd_eval(args: argparse.Namespace) -> int:
    from pep.policy.embedded import EmbeddedEngine
    from pep.policy.engine import PolicyEngine, PolicyError
    from pep.policy.opa import OpaEngine

    policy_input = build_input(args)
    engine: PolicyEngine
    if args.opa_url:
        engine = OpaEngine(args.opa_url, args.decision, timeout_s=5.0)
    else:
        engine = EmbeddedEngine(Path(args.dir), args.decision, hot_reload=False)
    dump = orjson.OPT_INDENT_2
    try:
        await engine.start()
        decision = await engine.evaluate(policy_input)
    except PolicyError as exc:
        print(orjson.dumps({"input": policy_input}, option=dump).decode())
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2
    finally:
        await engine.close()
    if args.json:
        out = {"input": policy_input, "decision": decision.model_dump(mode="json")}
        print(orjson.dumps(out, option=dump).decode())
    else:
        print("input:")
        print(orjson.dumps(policy_input, option=dump).decode())
        print(
            f"\ndecision: {'ALLOW' if decision.allow else 'DENY'}  (revision {decision.policy_revision})"
        )
        print("reasons:")
        for r in decision.reasons:
            print(f"  - {r.code}: {r.message}")
        if not decision.reasons:
            print("  (none)")
        print("obligations:")
        print(
            orjson.dumps(decision.obligations.model_dump(exclude_none=True), option=dump).decode()
        )
    return 0 if decision.allow else 1


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="policy tooling: test, eval, check, build, schema")
    sub = policy.add_subparsers(dest="policy_command", required=True)

    test = sub.add_parser(
        "test", help="run every *_test.rego (opa test if available, else embedded)"
    )
    test.add_argument("dir", nargs="?", default=str(DEFAULT_BUNDLE))
    test.add_argument("--engine", choices=["auto", "embedded", "opa"], default="auto")
    test.add_argument("-v", "--verbose", action="store_true", help="list passing tests too")
    test.set_defaults(func=cmd_test)

    ev = sub.add_parser("eval", help="build a PolicyInput and print the decision")
    ev.add_argument(
        "--user", required=True, help="user name (attributes from the dev IdP users file)"
    )
    ev.add_argument("--groups", help="comma-separated groups (overrides the users file)")
    ev.add_argument("--teams", help="comma-separated teams (overrides the users file)")
    ev.add_argument("--users-file", help="default: idp/users.yaml")
    ev.add_argument("--model", required=True)
    ev.add_argument("--prompt", default="")
    ev.add_argument(
        "--api",
        default="chat.completions",
        choices=[
            "chat.completions",
            "messages",
            "embeddings",
            "models.list",
            "audit.read",
            "usage.read",
            "cache.admin",
        ],
    )
    ev.add_argument("--max-tokens", type=int)
    ev.add_argument("--dir", default=str(DEFAULT_BUNDLE), help="policy bundle (embedded engine)")
    ev.add_argument("--opa-url", help="ask an OPA sidecar instead of the embedded engine")
    ev.add_argument("--decision", default="regogate/decision")
    ev.add_argument("--json", action="store_true", help="one JSON document")
    ev.set_defaults(func=cmd_eval)

    ck = sub.add_parser("check", help="compile and strictly check a bundle")
    ck.add_argument("dir", nargs="?", default=str(DEFAULT_BUNDLE))
    ck.add_argument("--decision", default="regogate/decision")
    ck.set_defaults(func=cmd_check)

    bd = sub.add_parser(
        "build", help="write the bundle as an OPA bundle (.tar.gz with .manifest revision)"
    )
    bd.add_argument("dir", nargs="?", default=str(DEFAULT_BUNDLE))
    bd.add_argument("-o", "--output", default="bundle.tar.gz")
    bd.add_argument("--signing-key", help="PEM private key: add .signatures.json (OPA format)")
    bd.add_argument("--signing-alg", default="RS256", help="JWS algorithm (RS256, ES256, ...)")
    bd.add_argument("--key-id", help="kid of the signing key (OPA's --verification-key-id)")
    bd.set_defaults(func=cmd_build)

    sc = sub.add_parser("schema", help="write the JSON Schema of PolicyInput and Decision")
    sc.add_argument("--out", default="docs/schema")
    sc.set_defaults(func=cmd_schema)
