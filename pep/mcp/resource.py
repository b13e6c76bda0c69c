"""The gateway as the OAuth 2.1 resource server of MCP clients (MCP authorization spec).

    GET /.well-known/oauth-protected-resource[/mcp[/{server}]]   RFC 9728 metadata
    authenticate_mcp(request) -> Principal                        used by the MCP proxy

A request without a valid token gets 401 with ``WWW-Authenticate: Bearer
resource_metadata="<metadata URL>"`` (RFC 9728 section 5.1), from which an MCP client finds
the trusted issuers. A token is accepted only when its ``aud`` names the configured MCP
resource (RFC 8707): a token minted for the model API, or for another resource server, is
refused ``invalid_token`` even when its signature and issuer are fine -- a token is for one
audience, and accepting another's is the confused deputy the MCP spec warns about.

Every MCP path (``/mcp`` and each ``/mcp/{server}``) shares the one resource identifier; the
per-path metadata documents name it too. The MCP SDK and RFC 9728bis accept a resource that
is a path-prefix of the URL the client used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from pep import appkeys
from pep.auditing import event
from pep.errors import (
    GatewayError,
    InvalidAuthRequest,
    MISSING_CREDENTIALS,
    NotFound,
    Unauthorized,
    bearer_challenge,
)
from pep.mcp.auth_settings import McpResourceSettings
from pep.principal import Principal
from pep.steps import audit, exchange_for
from pep.tracing import child

WELL_KNOWN = "/.well-known/oauth-protected-resource"
MCP_PREFIX = "/mcp"


class McpResource:
    """The resource server's configuration, resolved once: the metadata document and the
    audience every MCP token must carry."""

    def __init__(self, settings: McpResourceSettings, issuers: Iterable[str],
                 servers: Iterable[str]) -> None:
        trusted = list(issuers)
        named = list(settings.authorization_servers or trusted)
        unknown = [a for a in named if a not in trusted]
        if unknown:
            raise ValueError(f"mcp.authorization_servers: {unknown} are not identity.issuers")
        self.settings = settings
        self.resource = settings.resource
        self.audiences: tuple[str, ...] = (settings.resource,)
        self.servers = frozenset(servers)
        doc: dict[str, Any] = {
            "resource": settings.resource,
            "authorization_servers": named,
            # MCP: tokens only in the Authorization header, never in a query string.
            "bearer_methods_supported": ["header"],
            "resource_name": settings.resource_name,
        }
        if settings.scopes_supported:
            doc["scopes_supported"] = list(settings.scopes_supported)
        if settings.resource_documentation:
            doc["resource_documentation"] = settings.resource_documentation
        self.document = doc

    def metadata_url(self, path: str) -> str:
        """RFC 9728 section 3.1: the well-known segment goes between the host and the path.
        Built from the configured resource's origin, never from the Host header."""
        suffix = path if path == MCP_PREFIX or path.startswith(MCP_PREFIX + "/") else MCP_PREFIX
        return f"{self.settings.origin}{WELL_KNOWN}{suffix}"


MCP_RESOURCE = web.AppKey("mcp_resource", McpResource)


def www_authenticate(request: web.Request, error: str | None = None,
                     description: str | None = None) -> str:
    """The ``WWW-Authenticate`` value of an MCP 401 (or 400): RFC 6750's Bearer challenge
    with RFC 9728's ``resource_metadata`` naming this path's metadata document."""
    resource = request.app[MCP_RESOURCE]
    base = bearer_challenge(error, description)
    return f'{base}, resource_metadata="{resource.metadata_url(_server_path(request))}"'


def _server_path(request: web.Request) -> str:
    server = request.match_info.get("server")
    return f"{MCP_PREFIX}/{server}" if server else MCP_PREFIX


def _bearer_only(request: web.Request) -> CIMultiDict[str]:
    """MCP clients MUST send the token in ``Authorization`` (MCP authorization spec, "Token
    Requirements"): ``x-api-key`` and query strings are not consulted on MCP paths."""
    headers: CIMultiDict[str] = CIMultiDict()
    for value in request.headers.getall("Authorization", ()):
        headers.add("Authorization", value)
    return headers


async def authenticate_mcp(request: web.Request) -> Principal:
    """The verified caller of an MCP request; 401 (with ``resource_metadata``), 400 or 503
    otherwise, each with an ``auth.failure`` record. Sets the exchange's principal."""
    resource = request.app[MCP_RESOURCE]
    x = exchange_for(request)
    try:
        with child(x, "authenticate"):
            principal = await request.app[appkeys.AUTHENTICATOR].authenticate(
                _bearer_only(request), audiences=resource.audiences)
    except GatewayError as err:
        if isinstance(err, Unauthorized):
            missing = err.code == MISSING_CREDENTIALS
            err.headers["WWW-Authenticate"] = www_authenticate(
                request, None if missing else "invalid_token", None if missing else err.message)
        elif isinstance(err, InvalidAuthRequest):
            err.headers["WWW-Authenticate"] = www_authenticate(
                request, "invalid_request", err.message)
        request.app[appkeys.METRICS].inc("auth_failures_total", code=err.code)
        await audit(request, event("auth.failure", x, error=err, extra={"code": err.code}),
                    required=False)
        raise
    x.principal = principal
    return principal


async def protected_resource_metadata(request: web.Request) -> web.Response:
    resource = request.app[MCP_RESOURCE]
    server = request.match_info.get("server")
    if server is not None and server not in resource.servers:
        raise NotFound("no such MCP server", code="unknown_endpoint")
    max_age = resource.settings.metadata_max_age_s
    return web.json_response(resource.document, headers={
        "Cache-Control": f"public, max-age={max_age}",
        # Browser-based MCP clients read this cross-origin (it holds nothing secret).
        "Access-Control-Allow-Origin": "*",
    })


def setup_mcp_resource(app: web.Application, settings: McpResourceSettings,
                       servers: Iterable[str]) -> McpResource:
    """Install the metadata routes and the resource ``authenticate_mcp`` checks against."""
    identity = app[appkeys.SETTINGS].identity
    resource = McpResource(settings, (i.issuer for i in identity.issuers), servers)
    app[MCP_RESOURCE] = resource
    for path in (WELL_KNOWN, f"{WELL_KNOWN}{MCP_PREFIX}", f"{WELL_KNOWN}{MCP_PREFIX}/{{server}}"):
        app.router.add_get(path, protected_resource_metadata, allow_head=True)
    return resource
