"""MCP gateway settings (``mcp:`` in the YAML): the upstream servers and the proxy's bounds.

Upstream URLs and commands come only from here: nothing a client sends chooses where the
gateway connects (GUIDE.md 3.7). Credentials for upstreams are per server (``auth``,
pep/mcp/auth_settings.py when present); the user's token is never forwarded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pep.mcp.auth_settings import McpResourceSettings, NoAuth, UpstreamAuth
from pep.mcp.stdio_settings import StdioServerSettings
from pep.settings_base import Frozen


class McpServerSettings(Frozen):
    # http: a streamable-HTTP MCP server at ``url``; stdio: a local server the gateway
    # launches and supervises (``stdio``: command from configuration only); demo: the
    # built-in demo server (pep/mcp/demo.py) the gateway itself serves on a loopback port.
    type: Literal["http", "stdio", "demo"] = "http"
    url: str | None = None
    stdio: StdioServerSettings | None = None
    # What the upstream sees instead of the user's token (pep/mcp/credentials.py): none,
    # static headers from configuration, or an RFC 8693 token exchange.
    auth: UpstreamAuth = NoAuth()
    description: str = ""
    # Until the upstream's whole answer to one message (JSON or its SSE stream) arrived.
    timeout_s: float = Field(30.0, gt=0, le=600)
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    # Per-server circuit breaker: this many consecutive upstream failures (unreachable,
    # timeout, 5xx, garbage) open it; after cooldown_s one call probes the server again.
    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_cooldown_s: float = Field(30.0, gt=0)
    @model_validator(mode="after")
    def _transport(self) -> McpServerSettings:
        if self.type == "http":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("an http MCP server needs url: http(s)://...")
        elif self.url is not None:
            raise ValueError(f"a {self.type} MCP server has no url")
        if (self.type == "stdio") != (self.stdio is not None):
            raise ValueError("stdio: is required for type stdio, and only for it")
        return self


class McpSettings(Frozen):
    enabled: bool = True
    servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    # The gateway as OAuth resource server for MCP clients (RFC 9728 metadata, RFC 8707
    # audience). Set: MCP tokens must carry ``resource`` in ``aud`` (pep/mcp/resource.py).
    # Unset: MCP requests are verified like model calls (identity.issuers[*].audiences).
    resource: McpResourceSettings | None = None
    # A JSON-RPC message (request body) larger than this is refused (413, JSON-RPC error).
    max_message_bytes: int = Field(1024 * 1024, gt=0, le=64 * 1024 * 1024)
    # An upstream answer larger than this is refused as garbage (502-equivalent).
    max_upstream_bytes: int = Field(8 * 1024 * 1024, gt=0, le=256 * 1024 * 1024)
    # JSON-RPC batches were removed from MCP in 2025-06-18; a batch is refused whole.
    # Sessions: idle ones expire; each user may hold at most this many at once.
    session_idle_s: float = Field(3600.0, gt=0)
    max_sessions_per_user: int = Field(32, ge=1, le=10_000)
    # Browsers' Origin values allowed on the MCP routes (DNS-rebinding defence); a request
    # with any other Origin is refused 403. Clients that send no Origin are not affected.
    allowed_origins: list[str] = Field(default_factory=list)
    # The output decision on tool results, resource contents and prompts (a secret a tool
    # returns is withheld or redacted). Needs content inspection on.
    output_decision: bool = True

    @model_validator(mode="after")
    def _names(self) -> McpSettings:
        for name in self.servers:
            if not name or not all(c.isalnum() or c in "-_" for c in name) or "__" in name:
                raise ValueError(f"servers.{name}: a server name is letters, digits, '-' and "
                                 "'_' (no '__', the aggregated endpoint's separator)")
        return self
