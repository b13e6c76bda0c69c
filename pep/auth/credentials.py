"""Where the user's token comes from: ``Authorization: Bearer`` or ``x-api-key``.

The OpenAI SDK sends ``Authorization: Bearer <api_key>``; the Anthropic SDK sends
``x-api-key: <api_key>``. Exactly one credential is accepted: both headers with different
values (or a header repeated) is a malformed request (RFC 6750 3.1 ``invalid_request``, 400);
the same token in both is harmless. The query string is never consulted (RFC 6750 2.3 tokens
end up in logs and Referer headers). Nothing here ever echoes token bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pep.errors import InvalidAuthRequest, Unauthorized

# RFC 6750 2.1 b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    getall: Any = getattr(headers, "getall", None)
    if getall is not None:  # aiohttp's CIMultiDict: case-insensitive, keeps repeats
        return list(getall(name, ()))
    lname = name.lower()
    return [v for k, v in headers.items() if k.lower() == lname]


def _too_large(max_bytes: int) -> Unauthorized:
    return Unauthorized(f"token is larger than {max_bytes} bytes", code="token_too_large")


def extract_token(headers: Mapping[str, str], max_bytes: int) -> str:
    auth = _values(headers, "Authorization")
    keys = _values(headers, "x-api-key")
    if len(auth) > 1 or len(keys) > 1:
        raise InvalidAuthRequest("send one credential header, once", param="authorization")
    bearer: str | None = None
    if auth:
        value = auth[0]
        if len(value) > max_bytes + 16:  # size first: nothing below should touch a huge value
            raise _too_large(max_bytes)
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "bearer":
            # RFC 6750 3.1: an unsupported scheme is "no credentials", not a malformed one.
            raise Unauthorized("only Bearer tokens are accepted", code="missing_token")
        bearer = rest.strip(" ")
        if _B64TOKEN.fullmatch(bearer) is None:
            raise InvalidAuthRequest("malformed Authorization header", param="authorization")
    api_key: str | None = None
    if keys:
        if len(keys[0]) > max_bytes + 16:
            raise _too_large(max_bytes)
        api_key = keys[0].strip(" ")
        if _B64TOKEN.fullmatch(api_key) is None:
            raise InvalidAuthRequest("malformed x-api-key header", param="x-api-key")
    if bearer is not None and api_key is not None and bearer != api_key:
        raise InvalidAuthRequest(
            "two different credentials (Authorization and x-api-key); send one",
            param="authorization",
        )
    token = bearer if bearer is not None else api_key
    if token is None:
        raise Unauthorized("no bearer token (Authorization: Bearer or x-api-key)", code="missing_token")
    if len(token) > max_bytes:
        raise _too_large(max_bytes)
    return token
