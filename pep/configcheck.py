"""``regogate config check``: everything that can be known about a config before serving.

Offline (always): the YAML and ``${...}`` references resolve, the settings validate (issuer
URLs are https unless loopback or ``allow_insecure_http``), the embedded engine's policy
folder and a shadow policy compile, and the audit signing key and deny list files exist.
Online (``--online``): every issuer's discovery/JWKS answers with keys, the OPA sidecar is
healthy, the audit store and usage store accept a connection.
Each problem is one line naming the key; the exit code is 2 when there is any.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pep.config import Settings


def offline_problems(settings: Settings) -> list[str]:
    problems: list[str] = []
    policy = settings.policy
    if policy.engine == "embedded":
        problems += _compile("policy.bundle", policy.bundle, policy.decision)
    if policy.shadow is not None:
        problems += _compile("policy.shadow.bundle", policy.shadow.bundle, policy.shadow.decision)
    key = settings.audit.signing_key
    if key is not None:
        from pep.audit.checkpoints import SigningKeyError, load_private_key

        try:
            load_private_key(Path(key))
        except SigningKeyError as exc:
            problems.append(f"audit.signing_key: {exc}")
    deny = settings.identity.deny_list
    if deny is not None and not Path(deny).is_file():
        problems.append(f"identity.deny_list: {deny} does not exist")
    problems += _workspace_problems(settings)
    return problems


def _workspace_problems(settings: Settings) -> list[str]:
    from pep.auth.fetch import is_loopback_host

    ws = settings.workspace
    if ws.client_id is None or ws.redirect_uri is not None:
        return []
    if is_loopback_host(settings.server.host):
        return []
    return [f"workspace.redirect_uri: not set while serving {settings.server.host}: browser"
            " sign-in derives it from the request on loopback addresses only and will refuse;"
            " set it to https://<gateway>/audit/callback (as registered at the IdP)"]


def _compile(where: str, root: Path, decision: str) -> list[str]:
    from pep.policy import bundle as bundle_mod
    from pep.policy.compiled import CompiledPolicy
    from pep.policy.engine import PolicyError

    if not Path(root).is_dir():
        return [f"{where}: policy folder {root} does not exist"]
    try:
        CompiledPolicy(bundle_mod.load(Path(root)), decision)
    except (bundle_mod.BundleError, PolicyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [f"{where}: {root} does not compile: {first}"]
    return []


def online_problems(settings: Settings, timeout_s: float = 5.0) -> list[str]:
    return asyncio.run(_online(settings, timeout_s))


async def _online(settings: Settings, timeout_s: float) -> list[str]:
    import aiohttp

    from pep.auth.fetch import FetchError, FetchPolicy, fetch_json

    problems: list[str] = []
    async with aiohttp.ClientSession() as session:
        for i, issuer in enumerate(settings.identity.issuers):
            where = f"identity.issuers[{i}] ({issuer.issuer})"
            fp = FetchPolicy(issuer.allow_insecure_http, timeout_s, 1024 * 1024)
            try:
                jwks_uri = issuer.jwks_uri
                if jwks_uri is None:
                    doc, _ = await fetch_json(session, issuer.issuer.rstrip("/")
                                           + "/.well-known/openid-configuration", fp)
                    if doc.get("issuer") != issuer.issuer:
                        problems.append(f"{where}: discovery names issuer {doc.get('issuer')!r}")
                        continue
                    jwks_uri = str(doc.get("jwks_uri", ""))
                keys, _ = await fetch_json(session, jwks_uri, fp)
                if not keys.get("keys"):
                    problems.append(f"{where}: JWKS at {jwks_uri} has no keys")
            except FetchError as exc:
                problems.append(f"{where}: {exc}")
        if settings.policy.engine == "opa":
            url = settings.policy.opa_url.rstrip("/") + "/health?bundles=true"
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as r:
                    if r.status != 200:
                        problems.append(f"policy.opa_url: OPA answered HTTP {r.status} at {url}")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problems.append(f"policy.opa_url: OPA unreachable at {url} ({type(exc).__name__})")
    problems += await _stores(settings, timeout_s)
    return problems


async def _stores(settings: Settings, timeout_s: float) -> list[str]:
    problems: list[str] = []
    store = settings.audit.store or ""
    if store.startswith(("postgresql://", "postgres://")):
        import asyncpg

        try:
            conn = await asyncpg.connect(store, timeout=timeout_s)
            await conn.close()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            problems.append(f"audit.store: cannot connect to PostgreSQL ({type(exc).__name__})")
    usage = settings.usage.store
    if usage.startswith(("redis://", "rediss://")):
        import redis.asyncio as aioredis

        pw = settings.usage.redis_password
        client = aioredis.Redis.from_url(
            usage, password=pw.get_secret_value() if pw else None,
            socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            await client.ping()
        except (OSError, aioredis.RedisError) as exc:
            problems.append(f"usage.store: cannot reach Redis ({type(exc).__name__})")
        finally:
            await client.aclose()
    return problems
