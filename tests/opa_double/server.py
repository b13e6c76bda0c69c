"""OPA's REST API, the parts regogate uses, served on 127.0.0.1 by aiohttp with real OPA
deciding (``tests/opa_double/oracle.py``). Used when no ``opa`` binary is available.

- ``POST /v1/data/{path}`` with ``{"input": ...}`` -> ``{"result": ...}`` (absent when
  undefined), ``decision_id`` when decision logging is on, ``provenance`` (OPA version and
  each bundle's manifest revision) with ``?provenance=true``; evaluation errors are HTTP 500,
  an unparsable body 400, as in OPA.
- ``GET /v1/data/{path}``: documents; ``system/bundles`` is each bundle's manifest and etag.
- ``GET /health`` (``?bundles``: 200 once bundles are active, always true here).
- ``GET /v1/status`` bundles with ``active_revision`` (OPA's status plugin).

The bundle is a directory (``opa run --bundle dir``) or a ``.tar.gz`` with ``.manifest``
(``regogate policy build``). With ``verification_key`` (a PEM public key, as OPA's
``--verification-key``) a bundle must carry a valid ``.signatures.json``, else it is refused.

Knobs (attributes, changeable while running) inject the failures OPA can have: ``delay_s``
(slow answer), ``fail_status`` (HTTP error), ``decision_logs`` (decision ids),
``status_plugin`` (whether ``/v1/status`` works). ``request_ids`` lists the
``input.request.id`` of each decision request (what OPA's decision log records as the input).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from tests.opa_double import oracle as oracle_mod
from tests.opa_double import signing


class OpaDouble:
    def __init__(self, bundle: Path, *, verification_key: bytes | None = None) -> None:
        self.bundle = oracle_mod.load_bundle(bundle)
        if verification_key is not None:
            signing.verify(self.bundle, verification_key)
        self._oracle = oracle_mod.Oracle.for_bundle(self.bundle)
        self.delay_s = 0.0
        self.fail_status: int | None = None
        self.decision_logs = True
        self.status_plugin = True
        self.requests = 0
        self.request_ids: list[str | None] = []
        self.health_queries: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    def _bundles_doc(self) -> dict[str, Any]:
        return {
            self.bundle.name: {
                "manifest": {"revision": self.bundle.revision, "roots": [""]}
                | self.bundle.manifest,
                "etag": "",
            }
        }

    def _provenance(self) -> dict[str, Any]:
        return {
            "version": oracle_mod.version(),
            "bundles": {self.bundle.name: {"revision": self.bundle.revision}},
        }

    async def _post_data(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_status:
            return _error(self.fail_status, "internal_error", "injected")
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return _error(400, "invalid_parameter", "body contains malformed input document")
        if not isinstance(body, dict):
            return _error(400, "invalid_parameter", "body must be an object")
        req = (body.get("input") or {}).get("request") if isinstance(body.get("input"), dict) else None
        self.request_ids.append(req.get("id") if isinstance(req, dict) else None)
        path = request.match_info["path"]
        try:
            defined, value = self._oracle.evaluate(path, body.get("input"))
        except oracle_mod.OracleError as exc:  # as OPA: evaluation errors are HTTP 500
            return _error(500, "internal_error", exc.message)
        answer: dict[str, Any] = {}
        if defined:
            answer["result"] = value
        if self.decision_logs:
            answer["decision_id"] = str(uuid.uuid4())
        if request.query.get("provenance", "false").lower() in ("", "true"):
            answer["provenance"] = self._provenance()
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def _get_data(self, request: web.Request) -> web.Response:
        path = request.match_info["path"].strip("/")
        if path == "system/bundles":
            return web.json_response({"result": self._bundles_doc()})
        try:
            defined, value = self._oracle.evaluate(path)
        except oracle_mod.OracleError as exc:
            return _error(500, "internal_error", exc.message)
        return web.json_response({"result": value} if defined else {})

    async def _health(self, request: web.Request) -> web.Response:
        self.health_queries.append(request.query_string)
        return web.json_response({})  # bundles are activated before the server starts

    async def _status(self, request: web.Request) -> web.Response:
        if not self.status_plugin:
            return _error(500, "internal_error", "status plugin not enabled")
        bundles = {
            self.bundle.name: {"name": self.bundle.name, "active_revision": self.bundle.revision}
        }
        return web.json_response({"result": {"bundles": bundles}})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/status", self._status)
        app.router.add_post("/v1/data/{path:.*}", self._post_data)
        app.router.add_get("/v1/data/{path:.*}", self._get_data)
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
        self._oracle.close()


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)
