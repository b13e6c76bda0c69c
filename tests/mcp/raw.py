"""Raw HTTP against the MCP routes (what an SDK never sends: broken JSON, batches, another
user's session id)."""

from __future__ import annotations

from typing import Any

import aiohttp

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "raw-test", "version": "1"}}}
ACCEPT = "application/json, text/event-stream"


class Raw:
    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http, self.url, self.token = http, url, token
        self.session_id: str | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}", "Accept": ACCEPT,
             "Content-Type": "application/json"}
        if self.session_id is not None:
            h["Mcp-Session-Id"] = self.session_id
        h.update(extra)
        return h

    async def post(self, body: Any, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None
                   ) -> tuple[int, dict[str, Any] | None, aiohttp.ClientResponse]:
        import orjson

        data = raw if raw is not None else orjson.dumps(body)
        async with self.http.post(self.url, data=data,
                                  headers=self.headers(**(headers or {}))) as resp:
            text = await resp.read()
            doc = orjson.loads(text) if text else None
            return resp.status, doc, resp

    async def initialize(self) -> str:
        status, doc, resp = await self.post(INIT)
        assert status == 200, (status, doc)
        sid = resp.headers["Mcp-Session-Id"]
        self.session_id = sid
        status, _, _ = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                                       headers={"MCP-Protocol-Version": "2025-11-25"})
        assert status == 202
        return sid

    async def call(self, rpc_id: int, method: str, params: dict[str, Any] | None = None
                   ) -> tuple[int, dict[str, Any] | None]:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": rpc_id, "method": method}
        if params is not None:
            msg["params"] = params
        status, doc, _ = await self.post(msg)
        return status, doc
