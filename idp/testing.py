"""Helpers for other test suites: a real dev IdP on 127.0.0.1, in-process or as a subprocess.

    async with running_idp(tmp_path) as idp:        # in this event loop
        token = idp.token("alice")
    with running_idp_sync(tmp_path) as idp:          # own thread + loop, for sync tests
        ...
    with idp_subprocess(tmp_path) as proc:           # ``python -m idp serve`` child process
        proc.issuer

Tokens from ``token``/``service_token``/``id_token``/``sign`` are minted in-process with the
server's own issuer, keys and directory (no HTTP round trip); they verify against its JWKS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from idp.keys import DEFAULT_ALG, DEFAULT_GRACE_S
from idp.server import IdpServer, start_server
from idp.state import read_state
from idp.tokens import DEFAULT_AUDIENCE, DEFAULT_CLIENT


class RunningIdp:
    """A started dev IdP and shortcuts to mint tokens it vouches for."""

    def __init__(self, server: IdpServer, data_dir: Path) -> None:
        self._server = server
        self.data_dir = data_dir
        self.issuer = server.issuer
        self.jwks_uri = f"{self.issuer}/jwks"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.token_endpoint = f"{self.issuer}/token"
        self.introspection_endpoint = f"{self.issuer}/introspect"

    @property
    def directory(self) -> Any:
        return self._server.tokens.directory

    def client_secret(self, client: str) -> str:
        """A dev client's secret (for introspection settings in tests)."""
        return str(self._server.tokens.client(client).secret)

    def token(self, user: str, **opts: Any) -> str:
        """A user access token. opts: client, audience, ttl_s (negative = already expired),
        scope, claims (mapping merged over the defaults), drop (claim names to remove)."""
        return self._server.tokens.user_token(user, **opts)

    def service_token(self, client: str = "batch-service", **opts: Any) -> str:
        return self._server.tokens.service_token(client, **opts)

    def id_token(self, user: str, *, client: str = DEFAULT_CLIENT, nonce: str | None = None) -> str:
        return self._server.tokens.id_token(user, client=client, nonce=nonce)

    def opaque_token(
        self, user: str | None = None, *, client: str = DEFAULT_CLIENT, **opts: Any
    ) -> str:
        """An opaque token the running server will introspect as active (a service token
        for ``client`` when ``user`` is None)."""
        tokens = self._server.tokens
        if user is None:
            claims = tokens.service_claims(client, **opts)
        else:
            claims = tokens.user_claims(user, client=client, **opts)
        return self._server.opaque.issue(claims)

    def revoke_opaque(self, token: str) -> bool:
        return self._server.opaque.revoke(token)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        typ: str | None = "at+jwt",
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign arbitrary claims with the active key (for hostile-token tests)."""
        return self._server.tokens.sign(claims, typ=typ, header=header)

    def sign_raw(self, header: bytes, payload: bytes, *, signing_alg: str | None = None) -> str:
        """Compact JWS over exact bytes (e.g. duplicate claims), signed by the active key."""
        return self._server.tokens.sign_raw(header, payload, signing_alg=signing_alg)

    def user_claims(self, user: str, **opts: Any) -> dict[str, Any]:
        return self._server.tokens.user_claims(user, **opts)

    def id_token_claims(self, user: str, **opts: Any) -> dict[str, Any]:
        """An ID token's claims (opts: client, nonce, ttl_s), to edit and ``sign``."""
        return self._server.tokens.id_token_claims(user, **opts)

    def rotate(
        self, remove_old: bool = False, *, alg: str | None = None, grace_s: int = DEFAULT_GRACE_S
    ) -> str:
        """Add a new active key (as ``python -m idp rotate`` does); returns its kid."""
        return self._server.tokens.keys.rotate(alg=alg, grace_s=grace_s, remove_old=remove_old)

    @property
    def active_kid(self) -> str:
        return str(self._server.tokens.keys.snapshot().active.kid)

    @property
    def jwks(self) -> dict[str, Any]:
        return self._server.tokens.keys.snapshot().jwks


@contextlib.asynccontextmanager
async def running_idp(
    data_dir: Path,
    *,
    port: int = 0,
    users: Path | None = None,
    audience: str = DEFAULT_AUDIENCE,
    alg: str = DEFAULT_ALG,
) -> AsyncIterator[RunningIdp]:
    server = await start_server(data_dir, port=port, users=users, audience=audience, alg=alg)
    try:
        yield RunningIdp(server, data_dir)
    finally:
        await server.close()


@contextlib.contextmanager
def running_idp_sync(data_dir: Path, **kwargs: Any) -> Iterator[RunningIdp]:
    """``running_idp`` on a background thread with its own event loop."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dev-idp", daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(start_server(data_dir, **kwargs), loop).result(
            timeout=30
        )
        try:
            yield RunningIdp(server, data_dir)
        finally:
            asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@dataclass
class IdpProcess:
    issuer: str
    process: subprocess.Popen[bytes]
    log_path: Path  # the server's stderr: banner and access log

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"


def _discovery_answers(issuer: str) -> bool:
    url = f"{issuer}/.well-known/openid-configuration"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(json.load(resp).get("issuer") == issuer)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def idp_subprocess(
    data_dir: Path,
    *,
    port: int = 0,
    users: Path | None = None,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = 20.0,
) -> Iterator[IdpProcess]:
    """Run ``python -m idp serve`` and wait until its discovery document answers."""
    cmd = [sys.executable, "-m", "idp", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if users is not None:
        cmd += ["--users", str(users)]
    cmd += list(extra_args)
    env = dict(os.environ)
    repo_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH")) if p)
    # The server logs every request: a pipe nobody drains would fill up and stall it.
    log_path = data_dir / "idp" / "serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                err = log_path.read_text(errors="replace")
                raise RuntimeError(f"dev IdP exited with {proc.returncode}: {err[-2000:]}")
            state = read_state(data_dir)
            issuer = state.get("issuer")
            if (
                state.get("pid") == proc.pid
                and isinstance(issuer, str)
                and _discovery_answers(issuer)
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("dev IdP did not answer discovery in time")
            time.sleep(0.05)
        yield IdpProcess(issuer=issuer, process=proc, log_path=log_path)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
