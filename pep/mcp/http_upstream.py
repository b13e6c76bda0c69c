"""The streamable-HTTP upstream: one POST per JSON-RPC message (MCP transports,
"Streamable HTTP"), answered by ``application/json`` (one message) or a
``text/event-stream`` that carries notifications and ends with the response.

Everything the upstream sends is bounded (``max_bytes`` in all) and must be JSON-RPC;
anything else is ``UpstreamUnavailable``, and no answer within the deadline is
``UpstreamTimeout``. The gateway's HTTP session never follows redirects here (an upstream
cannot send the gateway's credentials elsewhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from pep.mcp.upstream import UpstreamReply, UpstreamTimeout, UpstreamUnavailable

SESSION_HEADER = "Mcp-Session-Id"


class HttpUpstream:
    def __init__(self, name: str, url: str, session: Callable[[], aiohttp.ClientSession], *,
                 max_bytes: int, connect_timeout_s: float) -> None:
        self.name = name
        self.url = url
        self._session = session
        self._max_bytes = max_bytes
        self._connect_timeout_s = connect_timeout_s

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, message: dict[str, Any], *, headers: Mapping[str, str],
                   session_id: str | None, timeout_s: float) -> UpstreamReply:
        h = {**headers, "Content-Type": "application/json",
             "Accept": "application/json, text/event-stream"}
        if session_id is not None:
            h[SESSION_HEADER] = session_id
        timeout = aiohttp.ClientTimeout(total=None, connect=self._connect_timeout_s)
        want = message.get("id") if "method" in message else None
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session().post(
                        self.url, data=orjson.dumps(message), headers=h, timeout=timeout,
                        allow_redirects=False) as resp:
                    sid = resp.headers.get(SESSION_HEADER)
                    if resp.status == 202 or (resp.status < 300 and want is None):
                        await resp.release()
                        return UpstreamReply(resp.status, [], sid)
                    if resp.content_type == "text/event-stream" and resp.status < 300:
                        return UpstreamReply(resp.status, await self._events(resp, want), sid)
                    raw = await self._read(resp)
                    return UpstreamReply(resp.status, _messages(raw, resp.status), sid)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"MCP server {self.name!r} did not answer within "
                                  f"{timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"MCP server {self.name!r} unreachable: "
                                      f"{type(exc).__name__}") from exc

    async def terminate(self, session_id: str, headers: Mapping[str, str]) -> None:
        """DELETE the upstream session (best effort: it also expires on its own)."""
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                async with self._session().delete(
                        self.url, headers={**headers, SESSION_HEADER: session_id},
                        allow_redirects=False) as resp:
                    await resp.release()
        except (TimeoutError, aiohttp.ClientError):
            return

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_bytes:
                raise UpstreamUnavailable(f"MCP server {self.name!r} answered more than "
                                          f"{self._max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _events(self, resp: aiohttp.ClientResponse,
                      want: Any) -> list[dict[str, Any]]:
        """Server-sent events until the response to ``want`` (the stream may stay open)."""
        messages: list[dict[str, Any]] = []
        data: list[bytes] = []
        size = 0
        while True:
            try:
                line = await resp.content.readuntil(b"\n")
            except ValueError as exc:  # a line beyond the reader's limit
                raise UpstreamUnavailable(f"MCP server {self.name!r} sent an oversized "
                                          "event line") from exc
            size += len(line)
            if size > self._max_bytes:
                raise UpstreamUnavailable(f"MCP server {self.name!r} answered more than "
                                          f"{self._max_bytes} bytes")
            if not line:  # end of stream
                break
            line = line.rstrip(b"\r\n")
            if line:
                if line.startswith(b"data:"):
                    data.append(line[5:].removeprefix(b" "))
                continue  # event:, id:, retry: and comments carry nothing we relay
            if not data:
                continue
            doc = _message(b"\n".join(data), self.name)
            data = []
            messages.append(doc)
            if doc.get("id") == want and ("result" in doc or "error" in doc):
                return messages
        raise UpstreamUnavailable(f"MCP server {self.name!r} ended its event stream without "
                                  "answering")


def _message(raw: bytes, name: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(f"MCP server {name!r} sent something that is not JSON") from exc
    if not isinstance(doc, dict) or doc.get("jsonrpc") != "2.0":
        raise UpstreamUnavailable(f"MCP server {name!r} sent something that is not JSON-RPC")
    return doc


def _messages(raw: bytes, status: int) -> list[dict[str, Any]]:
    """A JSON body: one message (or, from an older server, a batch). An error status may
    come without a JSON-RPC body: then there is no message."""
    try:
        doc = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        doc = None
    docs = doc if isinstance(doc, list) else [doc]
    out = [d for d in docs if isinstance(d, dict) and d.get("jsonrpc") == "2.0"]
    if not out and status < 300:
        raise UpstreamUnavailable("the MCP server's answer is not JSON-RPC")
    return out
