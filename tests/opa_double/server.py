"""OPA-REST test double: ``POST /v1/data/{path}``, ``GET /health``, ``GET /v1/status``,
``GET /v1/data/system/bundles``, served by aiohttp on 127.0.0.1 with the embedded engine
(regorus) deciding. Used when no real ``opa`` binary is available.

Knobs (attributes, changeable while running) let tests inject the failures OPA can have:
``delay_s`` (slow answer), ``fail_status`` (HTTP error), ``decision_logs`` (decision ids),
``status_plugin`` (whether ``/v1/status`` works).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from pep.policy import bundle as bundle_mod
from pep.policy.compiled import clean_error, eval_rule, load_modules, new_engine


class OpaDouble:
    def __init__(self, bundle: Path) -> None:
        self.bundle = bundle_mod.load(bundle)
        self._engine = new_engine()
        load_modules(self._engine, self.bundle.modules, self.bundle.data)
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.decision_logs = True
        self.status_plugin = True
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _eval(self, path: str, policy_input: Any) -> tuple[bool, Any]:
        engine = self._engine
        engine.set_input_json(orjson.dumps(policy_input).decode())
        return eval_rule(engine, path)

    async def _data(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status:
            return web.json_response(
                {"code": "internal_error", "message": "injected"}, status=self.fail_status
            )
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return web.json_response({"code": "invalid_parameter", "message": "body"}, status=400)
        path = "data." + request.match_info["path"].strip("/").replace("/", ".")
        try:
            defined, value = self._eval(path, body.get("input"))
        except RuntimeError as exc:  # as OPA: evaluation errors are HTTP 500
            return web.json_response(
                {"code": "internal_error", "message": clean_error(exc)}, status=500
            )
        answer: dict[str, Any] = {}
        if defined:
            answer["result"] = value
        if self.decision_logs:
            answer["decision_id"] = str(uuid.uuid4())
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def _status(self, request: web.Request) -> web.Response:
        if not self.status_plugin:
            return web.json_response(
                {"code": "internal_error", "message": "status plugin not enabled"}, status=500
            )
        bundles = {"policies": {"name": "policies", "active_revision": self.bundle.revision}}
        return web.json_response({"result": {"bundles": bundles}})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/status", self._status)
        app.router.add_post("/v1/data/{path:.*}", self._data)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._engine = None  # regorus engines must be dropped on the thread that made them
