"""Azure OpenAI: the OpenAI wire format addressed by deployment, with ``api-version``.

``POST {base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`` with
the ``api-key`` header (https://learn.microsoft.com/azure/ai-services/openai/reference).
The deployment name is the model's ``model`` in config.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from adapters import openai
from adapters.openai import (  # noqa: F401 - responses are OpenAI's
    StreamTranslator,
    embeddings_from_provider,
    error_from_provider,
    from_provider,
)
from adapters.canonical import check_supported
from adapters.types import Target, UpstreamRequest


def validate(settings: Any) -> None:
    if not settings.base_url or settings.api_key is None:
        raise ValueError("azure_openai needs base_url (https://<resource>.openai.azure.com) "
                         "and api_key")


def _url(target: Target, op: str) -> str:
    ps = target.settings
    return (f"{ps.base_url.rstrip('/')}/openai/deployments/{quote(target.model, safe='')}"
            f"/{op}?api-version={quote(ps.api_version, safe='')}")


def _headers(target: Target) -> dict[str, str]:
    ps = target.settings
    return {"content-type": "application/json", **ps.headers,
            "api-key": ps.api_key.get_secret_value()}


def to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    out = openai.upstream_body(body, target)
    out.pop("model")  # the deployment in the URL chooses the model
    return UpstreamRequest("POST", _url(target, "chat/completions"), _headers(target),
                           orjson.dumps(out), stream=bool(out.get("stream")))


def embeddings_to_provider(body: dict[str, Any], target: Target) -> UpstreamRequest:
    check_supported(body, openai.EMBEDDINGS_SUPPORTED, "azure_openai")
    out = {k: v for k, v in body.items() if k != "model"}
    return UpstreamRequest("POST", _url(target, "embeddings"), _headers(target),
                           orjson.dumps(out))


class AzureOpenAIAdapter:
    """OpenAI's responses; requests addressed by deployment."""

    kind = "azure_openai"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)
    embeddings_to_provider = staticmethod(embeddings_to_provider)
    embeddings_from_provider = staticmethod(embeddings_from_provider)


ADAPTER = AzureOpenAIAdapter()
