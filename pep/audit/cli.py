"""``regogate audit``: verify, query, export and report on the audit trail, offline.

Every command reads the store directly (never through the gateway) and needs no signing key:
``--store URL`` names it, or ``--config FILE`` takes ``audit.store`` from the gateway config;
without either, the embedded default (SQLite under ``$REGOGATE_DATA_DIR`` or ``.regogate``).
Exit codes: 0 ok / trail valid, 1 trail invalid, 2 usage or store error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson

from pep.audit.checkpoints import (
    DEFAULT_PUBLIC_KEY_NAME,
    SigningKeyError,
    load_public_key,
    read_witness,
)
from pep.audit.bundle import BundleError, build_bundle, verify_bundle
from pep.audit.events import AuditUnavailable
from pep.audit.export import REPORT_GROUPS, csv_header, csv_line, ocsf_event
from pep.audit.factory import StoreURLError, sqlite_path, store_url, witness_dir
from pep.audit.query import DECISIONS, AuditQuery, QueryError
from pep.audit.reader import AuditReader, open_reader
from pep.audit.settings import AuditSettings
from pep.audit.verify import Break, VerifyReport, verify_trail


class AuditCliError(Exception):
    pass


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="verify, query, export and report on the audit trail")
    sub = audit.add_subparsers(dest="audit_command", required=True)

    v = sub.add_parser("verify", help="verify chains and signed checkpoints (exit 1 if broken)")
    _store_args(v)
    v.add_argument("--since", help="RFC 3339 time, date, or 15m/24h/7d")
    v.add_argument("--until", help="RFC 3339 time, date, or 15m/24h/7d")
    v.add_argument("--checkpoints", type=Path, action="append", metavar="PATH",
                   help="external witness: a checkpoint directory or JSON-lines file; repeat for "
                        "several (default: the configured/default directory beside the data dir)")
    v.add_argument("--user", help="check one subject's chain (subject or e-mail) against the "
                                  "newest signed per-user heads")
    v.add_argument("--bundle", type=Path, metavar="FILE",
                   help="verify an `export --proof` bundle offline (no store needed)")
    v.add_argument("--public-key", type=Path, action="append", metavar="FILE",
                   help="Ed25519 public key (PEM); repeat for several replicas' keys")
    v.add_argument("--json", action="store_true", help="machine-readable report")
    v.set_defaults(func=cmd_verify)

    q = sub.add_parser("query", help="records matching filters")
    _store_args(q)
    _filter_args(q)
    q.add_argument("--limit", type=int, default=1000)
    q.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    q.set_defaults(func=cmd_query)

    e = sub.add_parser("export", help="export records as JSON lines, CSV or OCSF API Activity")
    _store_args(e)
    _filter_args(e)
    e.add_argument("--format", choices=("jsonl", "csv", "ocsf"), default="jsonl")
    e.add_argument("--output", "-o", type=Path, help="file to write (default stdout)")
    e.add_argument("--proof", action="store_true",
                   help="with --user: write a bundle (records + signed checkpoint + Merkle proof) "
                        "that `verify --bundle` checks offline")
    e.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="requests, denies by reason, tokens and cost per day")
    _store_args(r)
    _filter_args(r)
    r.add_argument("--by", choices=REPORT_GROUPS, default="user")
    r.add_argument("--format", choices=("table", "json"), default="table")
    r.set_defaults(func=cmd_report)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="gateway YAML config (uses its audit.store)")
    p.add_argument("--store", help="sqlite:///path.db or postgresql://... (overrides --config)")
    p.add_argument("--pg-schema", default=None, help="PostgreSQL schema (default from config or public)")


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", help="subject or e-mail")
    p.add_argument("--team")
    p.add_argument("--model", help="requested or served model")
    p.add_argument("--api", help="what.api, e.g. chat.completions, messages or mcp")
    p.add_argument("--decision", choices=DECISIONS)
    p.add_argument("--event", help="event type, e.g. policy.deny")
    p.add_argument("--request-id")
    p.add_argument("--since", help="RFC 3339 time, date, or 15m/24h/7d")
    p.add_argument("--until", help="RFC 3339 time, date, or 15m/24h/7d")


def data_dir_default() -> Path:
    return Path(os.environ.get("REGOGATE_DATA_DIR", ".regogate"))


def resolve(args: argparse.Namespace) -> tuple[AuditReader, AuditSettings, Path]:
    """Reader plus the settings and the data dir where default keys are looked for (for a
    ``--store sqlite:///...`` URL: the database's directory, where the gateway puts them)."""
    settings, data_dir = AuditSettings(), data_dir_default()
    if args.config is not None:
        from pep.config import ConfigError, load_settings

        try:
            full = load_settings(args.config)
        except ConfigError as exc:
            raise AuditCliError(str(exc)) from exc
        settings, data_dir = full.audit, full.server.data_dir
    url = args.store or store_url(settings, data_dir)
    if args.store and url.startswith("sqlite:"):
        try:
            data_dir = sqlite_path(url).parent
        except StoreURLError as exc:
            raise AuditCliError(str(exc)) from exc
    try:
        reader = open_reader(url, pg_schema=args.pg_schema or settings.pg_schema)
    except (StoreURLError, ValueError) as exc:
        raise AuditCliError(str(exc)) from exc
    return reader, settings, data_dir


def _query(args: argparse.Namespace, **extra: Any) -> AuditQuery:
    params = {k: getattr(args, k, None) for k in
              ("user", "team", "model", "api", "decision", "event", "request_id", "since",
               "until")}
    params.update(extra)
    try:
        return AuditQuery.from_params(params)
    except QueryError as exc:
        raise AuditCliError(str(exc)) from exc


async def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        reader, settings, data_dir = resolve(args)
    except AuditCliError as exc:
        print(f"regogate audit: {exc}", file=sys.stderr)
        return 2
    try:
        return int(await body(reader, settings, data_dir))
    except (AuditCliError, AuditUnavailable, SigningKeyError) as exc:
        print(f"regogate audit: {exc}", file=sys.stderr)
        return 2
    finally:
        await reader.close()


def public_keys(args: argparse.Namespace, settings: AuditSettings, data_dir: Path) -> list[Any]:
    if args.public_key:
        return [load_public_key(p) for p in args.public_key]
    candidates = [data_dir / DEFAULT_PUBLIC_KEY_NAME]
    if settings.signing_key is not None:
        candidates.insert(0, settings.signing_key)  # its public half is used
    for path in candidates:
        if path.exists():
            return [load_public_key(path)]
    return []


async def cmd_verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        return verify_bundle_file(args)

    async def body(reader: AuditReader, settings: AuditSettings, data_dir: Path) -> int:
        q = _query(args)
        keys = public_keys(args, settings, data_dir)
        if args.user:
            witness, _ = witness_checkpoints(args, settings, data_dir)
            report = await verify_user(reader, args.user, keys, witness)
        else:
            # Witnesses first, the database second: the writer publishes a checkpoint only
            # after committing it, so a live trail never looks like a deleted checkpoint.
            extra, warnings = witness_checkpoints(args, settings, data_dir)
            report = await verify_trail(reader, public_keys=keys, extra_checkpoints=extra,
                                        since=q.since, until=q.until)
            report.warnings[:0] = warnings
        print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode()
              if args.json else render_verify(report))
        return 0 if report.valid else 1

    return await _run(args, body)


def witness_checkpoints(args: argparse.Namespace, settings: AuditSettings,
                        data_dir: Path) -> tuple[list[Any], list[str]]:
    """--checkpoints PATHs, else the gateway's witness directory and log (when present)."""
    if args.checkpoints:
        paths = list(args.checkpoints)
        for p in paths:
            if not p.exists():
                raise AuditCliError(f"checkpoint witness {p} does not exist")
    else:
        paths = [p for p in (witness_dir(settings, data_dir), settings.witness_log)
                 if p is not None and p.exists()]
    if not paths:
        return [], ["no external witness found: deleting checkpoint rows in the database "
                    "together with records cannot be detected (pass --checkpoints)"]
    out: list[Any] = []
    for p in paths:
        out.extend(read_witness(p))
    return out, []


async def verify_user(reader: AuditReader, user: str, keys: list[Any],
                      witness: list[Any] | None = None) -> VerifyReport:
    try:
        bundle = await build_bundle(reader, user, witness)
    except BundleError as exc:
        report = VerifyReport(valid=False)
        report.error = Break("deleted", "user", None, str(exc), user)
        return report
    return verify_bundle(bundle, keys)


def verify_bundle_file(args: argparse.Namespace) -> int:
    try:
        bundle = orjson.loads(args.bundle.read_bytes())
        keys = [load_public_key(p) for p in args.public_key or []]
    except (OSError, orjson.JSONDecodeError, SigningKeyError) as exc:
        print(f"regogate audit: cannot read bundle: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print("regogate audit: --bundle needs --public-key", file=sys.stderr)
        return 2
    report = verify_bundle(bundle, keys)
    print(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode()
          if args.json else render_verify(report))
    return 0 if report.valid else 1


def render_verify(r: VerifyReport) -> str:
    lines = [f"records: {r.records} (seq {r.first_seq}..{r.last_seq}), subjects: {r.users}",
             f"checkpoints: {r.checkpoints_verified}/{r.checkpoints_total} verified"]
    if r.latest_checkpoint:
        lines.append(f"latest checkpoint: seq {r.latest_checkpoint['seq']} at "
                     f"{r.latest_checkpoint['time']} ({r.latest_checkpoint['kind']}); "
                     f"{r.unsealed_records} record(s) after it")
    lines += [f"warning: {w}" for w in r.warnings]
    if r.error is None:
        lines.append("VALID")
    else:
        e = r.error
        who = f" subject={e.subject}" if e.subject else ""
        rid = f" request_id={e.request_id}" if e.request_id else ""
        lines.append(f"INVALID: {e.kind} at seq {e.seq} ({e.chain} chain){who}{rid}: {e.message}")
    return "\n".join(lines)


async def cmd_query(args: argparse.Namespace) -> int:
    async def body(reader: AuditReader, _s: AuditSettings, _d: Path) -> int:
        records = await reader.query(_query(args, limit=args.limit))
        if args.format == "table":
            print(render_table([_table_row(r.export()) for r in records],
                               ("seq", "time", "event", "user", "model", "decision", "status",
                                "tokens", "request_id", "decision_id")))
        else:
            out = sys.stdout
            for rec in records:
                out.write(orjson.dumps(rec.export()).decode() + "\n")
        return 0

    return await _run(args, body)


def _table_row(doc: dict[str, Any]) -> dict[str, Any]:
    outcome = doc.get("outcome") or {}
    tokens = ""
    if outcome.get("tokens_in") is not None:
        tokens = f"{outcome.get('tokens_in')}/{outcome.get('tokens_out')}"
    decision = doc.get("decision") or {}
    return {
        "seq": doc["chain"]["seq"], "time": doc.get("time", "")[:19], "event": doc.get("event"),
        "user": (doc.get("who") or {}).get("subject") or "-",
        "model": (doc.get("what") or {}).get("model_requested") or "-",
        "decision": ("allow" if decision.get("allow") else "deny") if decision else "-",
        "status": outcome.get("status") or "-", "tokens": tokens or "-",
        "request_id": doc.get("request_id"), "decision_id": doc.get("decision_id") or "-",
    }


def render_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    if not rows:
        return "(no records)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    head = "  ".join(c.ljust(widths[c]) for c in columns)
    body = ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join([head, *body])


async def cmd_export(args: argparse.Namespace) -> int:
    async def body(reader: AuditReader, _s: AuditSettings, _d: Path) -> int:
        if args.proof:
            if not args.user:
                raise AuditCliError("--proof needs --user")
            try:
                bundle = await build_bundle(reader, args.user)  # the store's own view
            except BundleError as exc:
                raise AuditCliError(str(exc)) from exc
            data = orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n"
            if args.output:
                args.output.write_bytes(data)
            else:
                sys.stdout.write(data.decode())
            return 0
        with contextlib.ExitStack() as stack:
            out: TextIO = sys.stdout
            if args.output:
                # A one-shot CLI process: a blocking open here stalls nothing else.
                out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))  # noqa: ASYNC230
            if args.format == "csv":
                out.write(csv_header())
            async for rec in reader.matching(_query(args)):
                if args.format == "csv":
                    out.write(csv_line(rec))
                elif args.format == "ocsf":
                    out.write(orjson.dumps(ocsf_event(rec)).decode() + "\n")
                else:
                    out.write(orjson.dumps(rec.export()).decode() + "\n")
        return 0

    return await _run(args, body)


async def cmd_report(args: argparse.Namespace) -> int:
    async def body(reader: AuditReader, _s: AuditSettings, _d: Path) -> int:
        rows = await reader.report(_query(args), args.by)
        if args.format == "json":
            print(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
            return 0
        table = [{**r, "denies_by_reason": ",".join(f"{k}={v}" for k, v in r["denies_by_reason"].items()) or "-"}
                 for r in rows]
        print(render_table(table, (args.by, "day", "requests", "allowed", "denied", "errors",
                                   "rejected", "denies_by_reason", "tokens_in", "tokens_out", "cost_usd",
                                   "cache_hits", "saved_cost_usd")))
        return 0

    return await _run(args, body)
