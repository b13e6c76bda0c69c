"""Typed application state keys: the only way components reach shared resources."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from pep.config import Settings

if TYPE_CHECKING:
    from pep.audit.events import AuditStore
    from pep.conversations import ConversationStore
    from pep.policy.engine import PolicyEngine
    from pep.usage.tracker import UsageTracker

SETTINGS = web.AppKey("settings", Settings)
HTTP_SESSION = web.AppKey("http_session", aiohttp.ClientSession)
PROVIDER_SESSION = web.AppKey("provider_session", aiohttp.ClientSession)
AUTHENTICATOR: web.AppKey[Any] = web.AppKey("authenticator")
POLICY: web.AppKey["PolicyEngine"] = web.AppKey("policy")
SHADOW: web.AppKey[Any] = web.AppKey("shadow")
AUDIT: web.AppKey["AuditStore"] = web.AppKey("audit")
USAGE: web.AppKey["UsageTracker"] = web.AppKey("usage")
ROUTER: web.AppKey[Any] = web.AppKey("router")
METRICS: web.AppKey[Any] = web.AppKey("metrics")
CONTENT: web.AppKey[Any] = web.AppKey("content")
CATALOG: web.AppKey[Any] = web.AppKey("catalog")
DIALECTS: web.AppKey[dict[str, Any]] = web.AppKey("dialects")
CONVERSATIONS: web.AppKey["ConversationStore"] = web.AppKey("conversations")
CACHE: web.AppKey[Any] = web.AppKey("cache")
STREAM_SLOTS = web.AppKey("stream_slots", asyncio.Semaphore)
