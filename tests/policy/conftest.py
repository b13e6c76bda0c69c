"""Fixtures: policy bundles on disk and started engines of every kind.

``engine_kind`` parametrises a test over the embedded engine, the OPA-REST test server backed
by real OPA (``opa_oracle``: tests/opa_double, OPA's Go engine through opa-golib-python-bindings)
and, when an ``opa`` binary is on PATH or in OPA_BIN, ``opa run --server`` itself.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pep.policy.embedded import EmbeddedEngine
from pep.policy.engine import PolicyEngine
from pep.policy.opa import OpaEngine
from tests.opa_double import OpaDouble, require_oracle

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"


def opa_binary() -> str | None:
    explicit = os.environ.get("OPA_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("opa")


def write_bundle(root: Path, modules: dict[str, str], data: dict[str, Any] | None = None) -> Path:
    import orjson

    root.mkdir(parents=True, exist_ok=True)
    for name, src in modules.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src)
    if data is not None:
        (root / "data.json").write_bytes(orjson.dumps(data))
    return root


def policy_input(
    sub: str = "alice",
    groups: tuple[str, ...] = ("ml-team",),
    *,
    model: str = "mock-gpt",
    api: str = "chat.completions",
    types: tuple[str, ...] = (),
    teams: tuple[str, ...] = ("research",),
    request_id: str = "req-1",
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "version": "v1",
        "user": {
            "sub": sub,
            "issuer": "https://idp.test",
            "kind": "user",
            "groups": list(groups),
            "teams": list(teams),
            "team": teams[0] if teams else None,
            "roles": [],
            "claims": {},
        },
        "client": {"id": "dev-cli"},
        "actor": None,
        "request": {
            "id": request_id,
            "api": api,
            "model": model,
            "stream": False,
            "max_tokens": None,
            "params": {},
            "tools": [],
            "messages": [],
            "text": "",
            "estimated_tokens": 10,
        },
        "content": {
            "findings": [
                {"type": t, "message_index": 0, "start": 0, "end": 1, "detector": "builtin"}
                for t in types
            ],
            "types": sorted(set(types)),
        },
        "usage": {},
        "time": {
            "now_ns": 1767323045000000000,
            "rfc3339": "2026-01-02T03:04:05Z",
            "weekday": "Friday",
            "hour": 3,
        },
    }
    doc.update(extra)
    return doc


def build_bundle(root: Path, into: Path) -> Path:
    """``regogate policy build`` of ``root`` into a fresh ``.tar.gz`` under ``into``."""
    from pep.policy.build import build

    into.mkdir(parents=True, exist_ok=True)
    out = into / f"bundle-{len(list(into.iterdir()))}.tar.gz"
    build(root, out)
    return out


class _RealOpa:
    def __init__(self, binary: str, bundle: Path) -> None:
        self.binary, self.bundle = binary, bundle
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.proc = await asyncio.create_subprocess_exec(
            *[
                self.binary,
                "run",
                "--server",
                "--addr",
                f"127.0.0.1:{port}",
                "--log-level",
                "error",
                # The deployment's own OPA config (decision logs with the request id).
                "--config-file",
                str(REPO / "deploy" / "opa-config.yaml"),
                "--bundle",
                str(self.bundle),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"{self.url}/health") as resp:
                        if resp.status == 200:
                            return self.url
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("opa did not start")

    async def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), timeout=5)


EngineMaker = Callable[..., Awaitable[PolicyEngine]]


@pytest.fixture(params=["embedded", "opa_oracle", "opa_real"])
def engine_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "opa_real" and opa_binary() is None:
        pytest.skip("no opa binary on PATH or in OPA_BIN")
    if request.param == "opa_oracle":
        require_oracle()
    return str(request.param)


@pytest.fixture
async def make_engine(
    engine_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EngineMaker]:
    """``await make_engine(bundle_dir, decision="regogate/decision")`` -> started engine."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(
        bundle: Path, decision: str = "regogate/decision", timeout_s: float = 2.0
    ) -> PolicyEngine:
        engine: PolicyEngine
        if engine_kind == "embedded":
            engine = EmbeddedEngine(bundle, decision, hot_reload=False)
        else:
            # OPA serves what `regogate policy build` makes of the directory: the .manifest
            # revision is the embedded engine's content hash, so both report one revision.
            built = build_bundle(bundle, tmp_path_factory.mktemp("opa-bundle"))
            server: Any = (
                OpaDouble(built)
                if engine_kind == "opa_oracle"
                else _RealOpa(opa_binary() or "", built)
            )
            url = await server.start()
            cleanups.append(server.stop)
            engine = OpaEngine(url, decision, timeout_s=timeout_s)
        await engine.start()
        cleanups.append(engine.close)
        return engine

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()
