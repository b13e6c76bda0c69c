"""The composition root: ``create_app(settings) -> web.Application``.

Resources live in ``cleanup_ctx`` contexts (started in order, closed in reverse); state is
reached only through the typed keys in ``pep.appkeys``. Nothing happens at import time.
Tests may pass ``overrides`` to replace a component (e.g. an audit store that fails) with an
object implementing the same interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from pep import appkeys
from pep.catalog import Catalog
from pep.config import Settings
from pep.request_ids import IdPool
from pep.http.middleware import error_middleware
from pep.http.routes import setup_routes
from pep.inbound import Dialect
from pep.inbound.openai import OpenAIDialect
from pep.metrics import Metrics

log = logging.getLogger("regogate.app")

# Test doubles by key (a fake store for AUDIT, ...): heterogeneous, so typed Any.
Overrides = dict[web.AppKey[Any], Callable[[], Any]]
T = TypeVar("T")


class StartupError(Exception):
    """A component could not start; the message is one line naming it (``regogate serve``
    prints it and exits 2 rather than showing a traceback)."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _component(app: web.Application, key: web.AppKey[T], build: Callable[[], T],
               overrides: Overrides) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(_: web.Application) -> AsyncIterator[None]:
        try:
            component = overrides[key]() if key in overrides else build()
            if hasattr(component, "start"):
                await component.start()
        except Exception as exc:
            name = str(getattr(key, "_name", key)).rsplit(".", 1)[-1]
            raise StartupError(f"{name}: {_one_line(exc)}") from exc
        app[key] = component
        try:
            yield
        finally:
            if hasattr(component, "close"):
                await component.close()

    return ctx


def create_app(settings: Settings, *, overrides: Overrides | None = None) -> web.Application:
    from pep.audit.factory import open_store  # noqa: PLC0415 - keep import-time work nil
    from pep.auth import Authenticator
    from pep.content import ContentInspector
    from pep.conversations import open_conversations
    from pep.inbound.anthropic import AnthropicDialect
    from pep.inbound.completions import CompletionsDialect
    from pep.policy.factory import create_engine
    from pep.routing.router import Router
    from pep.routing.session import provider_session
    from pep.usage.tracker import open_tracker

    overrides = overrides or {}
    limits = settings.server.limits
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=limits.max_body_bytes,
        handler_args={"max_line_size": limits.max_line_size,
                      "max_field_size": limits.max_header_bytes,
                      "keepalive_timeout": limits.keepalive_timeout_s,
                      # Bodies are decoded by pep.http.body, with bounded work and clean errors.
                      "auto_decompress": False},
    )
    app[appkeys.SETTINGS] = settings
    app[appkeys.METRICS] = Metrics()
    app[appkeys.CATALOG] = Catalog(settings.models, settings.providers)
    dialects: dict[str, Dialect] = {"openai": OpenAIDialect(), "anthropic": AnthropicDialect(),
                                    "completions": CompletionsDialect()}
    app[appkeys.DIALECTS] = dialects
    app[appkeys.CONTENT] = ContentInspector(settings.content) if settings.content.enabled else None
    app[appkeys.STREAM_SLOTS] = asyncio.Semaphore(limits.max_concurrent_streams)
    app[appkeys.REQUEST_IDS] = IdPool()

    async def http_session(_: web.Application) -> AsyncIterator[None]:
        # IdP, OPA sidecar and other dependencies of ours.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=256, keepalive_timeout=30)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        # Providers (and MCP servers): an unqueued connector, no cookie jar (pep.routing.session).
        providers = provider_session()
        app[appkeys.HTTP_SESSION] = session
        app[appkeys.PROVIDER_SESSION] = providers
        try:
            yield
        finally:
            await providers.close()
            await session.close()

    def session() -> aiohttp.ClientSession:
        return app[appkeys.HTTP_SESSION]

    app.cleanup_ctx.extend([
        http_session,
        _component(app, appkeys.AUDIT,
                   lambda: open_store(settings.audit, settings.server.data_dir), overrides),
        _component(app, appkeys.AUTHENTICATOR,
                   lambda: Authenticator(settings.identity, session()), overrides),
        _component(app, appkeys.POLICY, lambda: create_engine(settings.policy, session()),
                   overrides),
        _component(app, appkeys.USAGE, lambda: open_tracker(settings.usage), overrides),
        _component(app, appkeys.CONVERSATIONS,
                   lambda: open_conversations(settings.responses, settings.audit,
                                              settings.server.data_dir), overrides),
        _component(app, appkeys.ROUTER,
                   lambda: Router(settings.providers, settings.models,
                                  app[appkeys.PROVIDER_SESSION]),
                   overrides),
    ])
    if settings.tracing.otlp_endpoint is not None or appkeys.TRACING in overrides:
        from pep.tracing import Tracing

        app.cleanup_ctx.insert(0, _component(
            app, appkeys.TRACING, lambda: Tracing(settings.tracing), overrides))
    if settings.events.sinks:
        from pep.events import EventBus

        app.cleanup_ctx.append(_component(
            app, appkeys.EVENTS,
            lambda: EventBus(settings.events, session(), app[appkeys.METRICS]), overrides))
        app.on_startup.append(_link_breaker_events)
    if settings.cache.enabled:
        from pep.cache.service import ResponseCache, cache_header

        deployments = {name: tuple(f"{d.provider}/{d.model}" for d in m.deployments())
                       for name, m in settings.models.items()}
        app.cleanup_ctx.append(_component(app, appkeys.CACHE, lambda: ResponseCache(
            settings.cache, settings.server.data_dir, app[appkeys.METRICS], deployments,
            router=lambda: app[appkeys.ROUTER]),
            overrides))
        app.on_response_prepare.append(cache_header)
    if settings.mcp.enabled and settings.mcp.servers:
        from pep.mcp.proxy import setup_mcp_routes
        from pep.mcp.resource import setup_mcp_resource
        from pep.mcp.service import McpGateway

        app.cleanup_ctx.append(_component(app, appkeys.MCP, lambda: McpGateway(
            settings.mcp, settings.usage, lambda: app[appkeys.PROVIDER_SESSION]), overrides))
        setup_mcp_routes(app)
        if settings.mcp.resource is not None:
            setup_mcp_resource(app, settings.mcp.resource, settings.mcp.servers)
    if settings.policy.shadow is not None:
        from pep.policy.shadow import create_shadow

        app.cleanup_ctx.append(_component(
            app, appkeys.SHADOW, lambda: create_shadow(settings.policy, session()), overrides))
    setup_routes(app)
    _setup_optional_routes(app)
    return app


async def _link_breaker_events(app: web.Application) -> None:
    bus = app[appkeys.EVENTS]

    def changed(provider: str, model: str, opened: bool) -> None:
        bus.emit("circuit_breaker.opened" if opened else "circuit_breaker.closed", None,
                 {"provider": provider, "model": model})

    app[appkeys.ROUTER].on_breaker_change = changed


def _setup_optional_routes(app: web.Application) -> None:
    from pep.audit.api import setup_audit_routes
    from pep.responses_api import setup_responses_routes
    from pep.usage.api import setup_usage_routes

    setup_responses_routes(app)
    setup_audit_routes(app)
    setup_usage_routes(app)
    if app[appkeys.SETTINGS].cache.enabled:
        from pep.cache.api import setup_cache_routes

        setup_cache_routes(app)
