"""Provider HTTP failures -> the gateway's error hierarchy (pep.errors), one mapping for all.

A provider's error text is never passed on, to the client or to the audit trail
(docs/audit.md, "Never recorded"): it can quote our key, the prompt, internal hostnames or
anything else the provider chose to put there, and a non-JSON body (an HTML page from a
proxy) is worse. What is passed on:

- a sanitised code and a message of our own, chosen by the status class::

      429            -> 429 upstream_rate_limited   (+ Retry-After from the provider)
      401, 403       -> 502 upstream_auth           (the provider refused *our* credentials)
      404            -> 502 upstream_not_found      (the configured model/endpoint is unknown)
      408, 504       -> 504 upstream_timeout
      other 4xx      -> 400 upstream_bad_request    (the provider refused this request)
      500, 501, ...  -> 502 upstream_error
      502, 503, 529  -> 502 upstream_unavailable    (overloaded / unavailable)

- the provider's documented error *type or code* token (``context_length_exceeded``,
  ``overloaded_error``, ``RESOURCE_EXHAUSTED``, ``ThrottlingException`` ...) as
  ``provider_code``, only when it is on the allow-list below: a token is an exact match or
  nothing, so free text can never ride along in that field;
- for the audit, ``err.upstream`` = {status, provider_code, body_bytes}: the size of what the
  provider said, never its content.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

from pep.errors import BadRequest, GatewayError, RateLimited, UpstreamError, UpstreamTimeout

AUTH_CODE = "upstream_auth"

# Documented error type/code tokens, per provider family (exact strings).
KNOWN_PROVIDER_CODES = frozenset({
    # OpenAI (and compatible servers): error.type and error.code
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "rate_limit_error", "server_error", "insufficient_quota", "context_length_exceeded",
    "rate_limit_exceeded", "model_not_found", "invalid_api_key", "content_filter",
    "content_policy_violation", "string_above_max_length", "invalid_value",
    "unsupported_value", "unsupported_parameter", "missing_required_parameter",
    "invalid_type", "invalid_prompt", "engine_overloaded", "tokens", "requests",
    # Anthropic: error.type
    "request_too_large", "api_error", "overloaded_error", "billing_error", "timeout_error",
    # Gemini: error.status (google.rpc.Code names)
    "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE", "UNAUTHENTICATED",
    "PERMISSION_DENIED", "NOT_FOUND", "RESOURCE_EXHAUSTED", "CANCELLED", "INTERNAL",
    "UNAVAILABLE", "DEADLINE_EXCEEDED",
    # Bedrock: x-amzn-ErrorType / event-stream :exception-type
    "ValidationException", "ThrottlingException", "ModelTimeoutException",
    "ServiceUnavailableException", "ModelNotReadyException", "AccessDeniedException",
    "ResourceNotFoundException", "ModelErrorException", "InternalServerException",
    "ServiceQuotaExceededException", "ModelStreamErrorException",
    "UnrecognizedClientException", "ExpiredTokenException",
})


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Retry-After (delta-seconds or HTTP-date, RFC 9110 10.2.3), or retry-after-ms."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def known_code(token: Any) -> str | None:
    """The token if it is a documented provider error type/code, else None."""
    return token if isinstance(token, str) and token in KNOWN_PROVIDER_CODES else None


def json_code(data: bytes | Any, *paths: tuple[str, ...]) -> str | None:
    """The first allow-listed token found at one of ``paths`` in a JSON error body."""
    doc: Any = data
    if isinstance(data, (bytes, str)):
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    for path in paths:
        node = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        code = known_code(node)
        if code is not None:
            return code
    return None


def from_status(kind: str, status: int, headers: Mapping[str, str], *,
                provider_code: str | None = None, body_bytes: int = 0,
                in_stream: bool = False) -> GatewayError:
    """The client-facing error for a provider answering ``status`` (for ``in_stream``: the
    status its in-band error event stands for); never any provider text."""
    code = known_code(provider_code)
    suffix = ("in-stream error" if in_stream else f"HTTP {status}") + (f", {code}" if code else "")
    err: GatewayError
    if status == 429:
        ra = retry_after_s(headers)
        err = RateLimited(f"the {kind} provider is rate limiting the gateway ({suffix})",
                          retry_after=int(ra + 0.999) if ra is not None else None,
                          code="upstream_rate_limited")
    elif status in (401, 403):
        # The provider rejected *our* credentials: the client can do nothing about it.
        err = UpstreamError(f"the {kind} provider rejected the gateway's credentials ({suffix})",
                            code=AUTH_CODE)
    elif status == 404:
        err = UpstreamError(f"the {kind} provider does not know the configured model or "
                            f"endpoint ({suffix})", code="upstream_not_found")
    elif status in (408, 504):
        err = UpstreamTimeout(f"the {kind} provider timed out ({suffix})")
    elif 400 <= status < 500:
        err = BadRequest(f"the {kind} provider rejected the request ({suffix})",
                         code="upstream_bad_request")
    elif status in (502, 503, 529):
        err = UpstreamError(f"the {kind} provider is unavailable or overloaded ({suffix})",
                            code="upstream_unavailable")
    else:
        err = UpstreamError(f"the {kind} provider failed ({suffix})")
    err.details["provider_status"] = status
    if code:
        err.details["provider_code"] = code
    err.upstream = {"status": status, "provider_code": code, "body_bytes": body_bytes}
    return err


def retriable_status(status: int) -> bool:
    # 529 is Anthropic's "overloaded".
    return status in (408, 409, 429) or status >= 500
