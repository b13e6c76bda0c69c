"""Start a real gateway in-process for end-to-end tests.

    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")            # official AsyncOpenAI, alice's dev IdP token
        await client.chat.completions.create(model="mock-gpt", messages=[...])

The gateway verifies tokens from a real dev IdP served on loopback (discovery + JWKS), runs
the embedded policy engine on policies/, a SQLite audit store under tmp_path and the offline
mock provider, unless ``config`` (deep-merged into the embedded mapping) or component
``overrides`` say otherwise. Everything binds 127.0.0.1 on free ports.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from idp.testing import RunningIdp, running_idp
from pep.app import Overrides, create_app
from pep.config import Settings, settings_from_mapping
from pep.defaults import embedded_mapping
from pep.http.edge import GatewayRunner


def error_body(exc: Any) -> dict[str, Any]:
    """The JSON error body of an SDK exception (openai's ``APIStatusError.body`` is typed
    ``object``): the gateway always answers errors with an object."""
    body = exc.body
    assert isinstance(body, dict), body
    return body


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@dataclass
class Gateway:
    url: str
    app: web.Application
    idp: RunningIdp
    settings: Settings
    clients: list[Any] = field(default_factory=list)

    def token(self, user: str, **opts: Any) -> str:
        return self.idp.token(user, **opts)

    def openai(self, user: str | None = None, *, token: str | None = None, **kw: Any) -> Any:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=f"{self.url}/v1",
                             api_key=token or self.token(user or "alice"), max_retries=0, **kw)
        self.clients.append(client)
        return client

    def anthropic(self, user: str | None = None, *, token: str | None = None, **kw: Any) -> Any:
        from anthropic import AsyncAnthropic

        client = AsyncAnthropic(base_url=self.url, api_key=token or self.token(user or "alice"),
                                max_retries=0, **kw)
        self.clients.append(client)
        return client

    def component(self, key: web.AppKey[Any]) -> Any:
        return self.app[key]

    async def audit_records(self) -> list[dict[str, Any]]:
        """The trail so far, read with the audit package's own reader (as auditors do)."""
        from pep.audit.factory import store_url
        from pep.audit.reader import open_reader

        reader = open_reader(store_url(self.settings.audit, self.settings.server.data_dir))
        try:
            return [r.doc() async for r in reader.records()]
        finally:
            await reader.close()


@asynccontextmanager
async def running_gateway(
    tmp_path: Path,
    *,
    config: dict[str, Any] | None = None,
    overrides: Overrides | None = None,
    idp: RunningIdp | None = None,
    port: int = 0,
) -> AsyncIterator[Gateway]:
    """``port``: 0 for any free one; a test that must know the URL before the gateway
    starts (a resource identifier in the config) passes one."""
    if idp is None:
        async with running_idp(tmp_path / "idp-data") as started:
            async with _gateway(tmp_path, started, config, overrides, port) as gw:
                yield gw
    else:
        async with _gateway(tmp_path, idp, config, overrides, port) as gw:
            yield gw


@asynccontextmanager
async def _gateway(
    tmp_path: Path, idp: RunningIdp, config: dict[str, Any] | None, overrides: Overrides | None,
    port: int = 0,
) -> AsyncIterator[Gateway]:
    mapping = embedded_mapping(data_dir=tmp_path / "gw-data", issuer=idp.issuer, port=0)
    mapping = deep_merge(mapping, config or {})
    settings = settings_from_mapping(mapping)
    app = create_app(settings, overrides=overrides)
    runner = GatewayRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    port = runner.addresses[0][1]
    gw = Gateway(url=f"http://127.0.0.1:{port}", app=app, idp=idp, settings=settings)
    try:
        yield gw
    finally:
        for client in gw.clients:
            await client.close()
        await runner.cleanup()
