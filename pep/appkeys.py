"""Typed application state keys: the only way components reach shared resources."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from pep.config import Settings

if TYPE_CHECKING:
    from pep.audit.events import AuditStore
    from pep.auth.authenticator import Authenticator
    from pep.cache.service import ResponseCache
    from pep.catalog import Catalog
    from pep.content import ContentInspector
    from pep.conversations import ConversationStore
    from pep.inbound import Dialect
    from pep.mcp.service import McpGateway
    from pep.metrics import Metrics
    from pep.policy.engine import PolicyEngine
    from pep.policy.shadow import ShadowEvaluator
    from pep.routing.router import Router
    from pep.usage.tracker import UsageTracker

SETTINGS = web.AppKey("settings", Settings)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
PROVIDER_SESSION = web.AppKey("provider_session", aiohttp.ClientSession)
AUTHENTICATOR: web.AppKey["Authenticator"] = web.AppKey("authenticator")
POLICY: web.AppKey["PolicyEngine"] = web.AppKey("policy")
SHADOW: web.AppKey["ShadowEvaluator"] = web.AppKey("shadow")
AUDIT: web.AppKey["AuditStore"] = web.AppKey("audit")
USAGE: web.AppKey["UsageTracker"] = web.AppKey("usage")
ROUTER: web.AppKey["Router"] = web.AppKey("router")
METRICS: web.AppKey["Metrics"] = web.AppKey("metrics")
# None when content inspection is off (settings.content.enabled: false).
CONTENT: web.AppKey["ContentInspector | None"] = web.AppKey("content")
CATALOG: web.AppKey["Catalog"] = web.AppKey("catalog")
DIALECTS: web.AppKey["dict[str, Dialect]"] = web.AppKey("dialects")
CONVERSATIONS: web.AppKey["ConversationStore"] = web.AppKey("conversations")
CACHE: web.AppKey["ResponseCache"] = web.AppKey("cache")
MCP: web.AppKey["McpGateway"] = web.AppKey("mcp")
STREAM_SLOTS = web.AppKey("stream_slots", asyncio.Semaphore)
TRACING: web.AppKey[Any] = web.AppKey("tracing")
EVENTS: web.AppKey[Any] = web.AppKey("events")
