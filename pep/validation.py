"""The one validation step (GUIDE.md 3.12): what a client may not send is defined here and
checked here, once, before content inspection, policy, the audit intent or any provider work.

    read the body (415 media type, 413 size, 408 deadline, 400/413/415 encoding: pep.http.body)
    -> parse JSON (400 invalid_json)
    -> forbidden keys (400 forbidden_parameter; the one list below)
    -> dialect -> canonical + structural checks (400: pep.request, pep.inbound)
    -> the model exists in configuration and has the right kind (404 / 400)

Nothing downstream re-decides any of it: the router and adapters only check what depends on
the provider a model routes to (parameters that provider cannot honour). A refusal here is
audited as ``request.rejected`` by the error middleware (reason code and sizes, never the body).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pep import appkeys
from pep.errors import BadRequest, UnsupportedMedia
from pep.exchange import Exchange
from pep.http.body import BodySizes, read_body
from pep.inbound import Dialect
from pep.request import NormalizedRequest, normalize_chat, normalize_embeddings

# Keys that, in some SDK or proxy (LiteLLM, openai/azure/bedrock/vertex clients), pick a URL,
# a credential, an upstream or request headers. Nothing in a body chooses where the gateway
# connects or with what (GUIDE.md 3.7): refused outright, whichever API or provider.
FORBIDDEN_KEYS = frozenset({
    "api_base", "base_url", "api_key", "api_version", "api_type", "azure_endpoint",
    "azure_deployment", "azure_ad_token", "deployment_id", "endpoint", "url", "extra_headers",
    "headers", "organization", "custom_llm_provider", "aws_access_key_id",
    "aws_secret_access_key", "aws_session_token", "aws_region_name", "region",
    "vertex_project", "vertex_location", "vertex_credentials",
})


def reject_forbidden(body: dict[str, Any]) -> None:
    for key in body:
        if key in FORBIDDEN_KEYS:
            raise BadRequest(
                f"parameter {key!r} is not allowed: upstream endpoints and credentials come "
                "from gateway configuration",
                param=key,
                code="forbidden_parameter",
            )


async def read_json(request: web.Request, x: Exchange) -> Any:
    x.body = BodySizes(declared=request.content_length)
    ctype = request.content_type
    if ctype != "application/json":
        raise UnsupportedMedia(f"Content-Type must be application/json, got {ctype or 'none'!r}")
    limits = request.app[appkeys.SETTINGS].server.limits
    raw = await read_body(request, x.body, max_bytes=limits.max_body_bytes,
                          timeout_s=limits.body_read_timeout_s)
    if not raw:
        raise BadRequest("request body is empty; a JSON object is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg}", code="invalid_json") from exc


async def validated_request(
    request: web.Request, x: Exchange, dialect: Dialect, api: str
) -> NormalizedRequest:
    """The whole validation step for a model-calling request; raises a 4xx GatewayError."""
    body = await read_json(request, x)
    if isinstance(body, dict):
        reject_forbidden(body)
    if api == "embeddings":
        req = normalize_embeddings(body, normalise_text=_unchanged)
    else:
        canonical = dialect.to_canonical(body)
        req = normalize_chat(canonical, normalise_text=_unchanged, inbound_format=dialect.name,
                             api=api)
    x.req = req
    request.app[appkeys.CATALOG].check(req.model, embeddings=api == "embeddings")
    return req


def _unchanged(text: str) -> str:
    # Normalisation for detection happens in content inspection (one pass, pep.pipeline.admit).
    return text
