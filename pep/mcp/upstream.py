"""The seam between the MCP proxy and an upstream MCP server, whatever its transport.

The proxy hands one JSON-RPC message (request or notification) to ``McpUpstream.send``
and receives every JSON-RPC message the upstream produced for it, in order. Transports:
streamable HTTP (``http_upstream``) and supervised stdio (``stdio_upstream``).

Transport failures are raised as ``UpstreamTimeout`` (no answer within ``timeout_s``)
or ``UpstreamUnavailable`` (cannot reach / dead / garbage); the proxy renders them as
JSON-RPC errors (504 / 502 equivalents) and counts them in the server's circuit breaker.
The user's token is never among ``headers``: those are the upstream credentials only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class UpstreamFailure(Exception):
    """Base of the transport failures an upstream reports to the proxy."""


class UpstreamTimeout(UpstreamFailure):
    """The upstream did not answer within the allotted time."""


class UpstreamUnavailable(UpstreamFailure):
    """The upstream cannot be reached, died, or answered something that is not MCP."""


@dataclass(frozen=True, slots=True)
class UpstreamReply:
    # HTTP-equivalent status of the upstream exchange (200, 202, 4xx/5xx).
    status: int
    # JSON-RPC messages received for this request (responses + notifications), in order.
    messages: list[dict[str, Any]]
    # The upstream's Mcp-Session-Id, if any.
    session_id: str | None


class McpUpstream(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(
        self,
        message: dict[str, Any],
        *,
        headers: Mapping[str, str],
        session_id: str | None,
        timeout_s: float,
    ) -> UpstreamReply: ...
