"""The gateway's error hierarchy and the one place that renders it.

    GatewayError (500 internal_error)            -- never raised on purpose; a bug
    ├── BadRequest          400 invalid_request_error
    ├── InvalidAuthRequest  400 invalid_request_error  (+ WWW-Authenticate error=invalid_request)
    ├── Unauthorized        401 authentication_error   (+ WWW-Authenticate: Bearer)
    ├── PolicyDenied        403 permission_error       (carries the policy's reason codes)
    ├── Forbidden           403 permission_error       (refused by the gateway itself, not
    │                           the policy: a workspace CSRF check)
    ├── NotFound            404 invalid_request_error
    ├── RequestTimeout      408 invalid_request_error  (body not received in time; closes)
    ├── PayloadTooLarge     413 invalid_request_error
    ├── UnsupportedMedia    415 invalid_request_error
    ├── RateLimited         429 rate_limit_error       (+ Retry-After)
    ├── Unavailable         503 service_unavailable    (+ Retry-After): a dependency of
    │                           ours failed (policy engine, IdP keys, audit store, ...)
    ├── UpstreamError       502 upstream_error         (provider failed)
    └── UpstreamTimeout     504 timeout_error

403 means "policy said no"; 503 means "we could not decide or record" -- GUIDE.md 3.5.
Third-party exceptions are converted at their boundary with ``raise X(...) from exc``;
``to_body`` is the only function that shapes an error for a client.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})
        # Extra machine-readable fields for the body (e.g. policy reasons). Never secrets.
        self.details: dict[str, Any] = dict(details or {})
        # For the audit only (upstream errors): provider status, allow-listed code, body size.
        self.upstream: dict[str, Any] | None = None


class BadRequest(GatewayError):
    status = 400
    type = "invalid_request_error"
    default_code = "invalid_request"


# RFC 6750 section 3 error_description: printable ASCII without '"' and '\\'.
_CHALLENGE_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')
MISSING_CREDENTIALS = "missing_token"


def bearer_challenge(error: str | None, description: str | None = None) -> str:
    """A ``WWW-Authenticate: Bearer`` value per RFC 6750 section 3 / 3.1.

    ``error`` is one of ``invalid_request`` (400), ``invalid_token`` (401),
    ``insufficient_scope`` (403), or None when the request carried no credentials at all
    (3.1: "SHOULD NOT include an error code or other error information"). Descriptions are
    the gateway's own messages, never token bytes.
    """
    if error is None:
        return 'Bearer realm="regogate"'
    value = f'Bearer realm="regogate", error="{error}"'
    if description:
        value += f', error_description="{_CHALLENGE_UNSAFE.sub("", description)[:200]}"'
    return value


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_token"

    def __init__(self, message: str, *, code: str | None = None, **kw: Any) -> None:
        super().__init__(message, code=code, **kw)
        # RFC 6750 section 3: always challenge; never echo token material. No token at all
        # (or another scheme) is "no credentials": a bare challenge without an error code.
        missing = self.code == MISSING_CREDENTIALS
        self.headers.setdefault("WWW-Authenticate", bearer_challenge(
            None if missing else "invalid_token", None if missing else message))


class InvalidAuthRequest(BadRequest):
    """400 for a malformed credential: two credentials, a repeated header, a value that is
    not a b64token (RFC 6750 section 3.1 ``invalid_request``)."""

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("WWW-Authenticate", bearer_challenge("invalid_request", message))


class PolicyDenied(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "policy_denied"


class Forbidden(GatewayError):
    status = 403
    type = "permission_error"
    default_code = "forbidden"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"


class PayloadTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"


class UnsupportedMedia(GatewayError):
    status = 415
    type = "invalid_request_error"
    default_code = "unsupported_media_type"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        if retry_after is not None:
            self.headers["Retry-After"] = str(max(1, int(retry_after)))


class Unavailable(GatewayError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.headers.setdefault("Retry-After", str(retry_after))


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class UpstreamTimeout(GatewayError):
    status = 504
    type = "timeout_error"
    default_code = "upstream_timeout"


def to_body(err: GatewayError) -> dict[str, Any]:
    """OpenAI-style error body: {"error": {message, type, param, code, ...details}}."""
    body: dict[str, Any] = {
        "message": err.message,
        "type": err.type,
        "param": err.param,
        "code": err.code,
    }
    body.update(err.details)
    return {"error": body}
