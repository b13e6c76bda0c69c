"""Provider HTTP failures -> the gateway's error hierarchy (pep.errors), one mapping for all.

Each adapter only extracts the provider's human message from its own error shape; the
status decides the class. Provider messages are truncated and never carry our key (the
router scrubs configured secrets from every message as a last line of defence).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

from pep.errors import BadRequest, GatewayError, RateLimited, UpstreamError, UpstreamTimeout

_MAX_MESSAGE = 500
AUTH_CODE = "upstream_auth"


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


def json_message(data: bytes, *paths: tuple[str, ...]) -> str:
    """First string found at one of ``paths`` in a JSON error body, else a text excerpt."""
    try:
        doc: Any = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data[:200].decode("utf-8", "replace").strip() or "no detail"
    for path in paths:
        node = doc
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and node:
            return node
    return "no detail"


def from_status(
    kind: str, status: int, message: str, headers: Mapping[str, str]
) -> GatewayError:
    msg = message[:_MAX_MESSAGE]
    if status == 429:
        ra = retry_after_s(headers)
        return RateLimited(
            f"{kind} provider rate limit: {msg}",
            retry_after=int(ra + 0.999) if ra is not None else None,
            code="upstream_rate_limited",
        )
    if status in (401, 403):
        # The provider rejected *our* credentials: the client can do nothing about it and
        # the provider's text may quote part of the key, so it is not passed on.
        return UpstreamError(f"{kind} provider rejected the gateway's credentials", code=AUTH_CODE)
    if status in (408, 504):
        return UpstreamTimeout(f"{kind} provider timed out ({status}): {msg}")
    if 400 <= status < 500:
        return BadRequest(f"{kind} provider rejected the request ({status}): {msg}",
                          code="upstream_invalid_request")
    return UpstreamError(f"{kind} provider error ({status}): {msg}")


def retriable_status(status: int) -> bool:
    # 529 is Anthropic's "overloaded".
    return status in (408, 409, 429) or status >= 500
