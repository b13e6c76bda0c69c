"""JSON-RPC 2.0 for the MCP routes: parsing a client message, and the one place a gateway
error becomes a JSON-RPC error object.

Codes: the JSON-RPC ones (-32700 parse error, -32600 invalid request, -32601 method not
found, -32602 invalid params, -32603 internal error) and, for the gateway's own refusals,
codes from the implementation-defined server range -32000..-32099 chosen so the last digits
recall the HTTP status (docs/mcp.md "Errors"). ``error.data`` carries the HTTP-equivalent
``status``, the gateway's ``code``, the request id and, for policy denials, the reasons and
decision id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from pep.errors import BadRequest, GatewayError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# HTTP-equivalent status -> server-range code.
_BY_STATUS = {
    401: -32001, 403: -32003, 404: -32004, 405: -32005, 406: -32006, 408: -32008,
    413: -32013, 415: -32015, 429: -32029, 500: INTERNAL_ERROR, 502: -32050, 503: -32053,
    504: -32054,
}
_BY_CODE = {"invalid_json": PARSE_ERROR, "method_not_found": METHOD_NOT_FOUND,
            "invalid_params": INVALID_PARAMS}

MAX_METHOD_CHARS = 128
MAX_ID_CHARS = 256


class RpcError(BadRequest):
    """A structurally invalid message (400 + JSON-RPC code)."""

    def __init__(self, message: str, rpc_code: int, *, code: str = "invalid_request") -> None:
        super().__init__(message, code=code)
        self.rpc_code = rpc_code


@dataclass(frozen=True, slots=True)
class Message:
    """One client message: a request (method + id), a notification (method, no id) or a
    response to a server-initiated request (id + result/error)."""

    doc: dict[str, Any]
    kind: str  # "request" | "notification" | "response"
    method: str | None
    id: str | int | None

    @property
    def params(self) -> dict[str, Any]:
        p = self.doc.get("params")
        return p if isinstance(p, dict) else {}


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -(2**53) < value < 2**53
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS


def parse(raw: bytes) -> Message:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RpcError(f"not valid JSON: {exc.msg}", PARSE_ERROR, code="invalid_json") from exc
    if isinstance(doc, list):
        # Batching was removed from MCP in revision 2025-06-18; one message per POST.
        raise RpcError("JSON-RPC batches are not supported: send one message per request",
                       INVALID_REQUEST, code="batch_not_supported")
    if not isinstance(doc, dict):
        raise RpcError("a JSON-RPC message must be an object", INVALID_REQUEST)
    if doc.get("jsonrpc") != "2.0":
        raise RpcError('"jsonrpc" must be "2.0"', INVALID_REQUEST)
    method = doc.get("method")
    has_id = "id" in doc
    if method is not None:
        if not isinstance(method, str) or not 0 < len(method) <= MAX_METHOD_CHARS:
            raise RpcError('"method" must be a non-empty string of at most '
                           f"{MAX_METHOD_CHARS} characters", INVALID_REQUEST)
        if "params" in doc and not isinstance(doc["params"], dict):
            raise RpcError('"params" must be an object', INVALID_REQUEST)
        if "result" in doc or "error" in doc:
            raise RpcError("a request carries no result or error", INVALID_REQUEST)
        if not has_id:
            return Message(doc, "notification", method, None)
        if not _valid_id(doc["id"]):
            raise RpcError('"id" must be a string or an integer (not null)', INVALID_REQUEST)
        return Message(doc, "request", method, doc["id"])
    if not has_id or not _valid_id(doc["id"]) or (("result" in doc) == ("error" in doc)):
        raise RpcError("a message needs a method, or an id with exactly one of result/error",
                       INVALID_REQUEST)
    return Message(doc, "response", None, doc["id"])


def rpc_code(err: GatewayError) -> int:
    explicit = getattr(err, "rpc_code", None)
    if isinstance(explicit, int):
        return explicit
    if err.code in _BY_CODE:
        return _BY_CODE[err.code]
    if err.status == 400:
        return INVALID_REQUEST
    return _BY_STATUS.get(err.status, INTERNAL_ERROR)


def error_object(err: GatewayError, request_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {"status": err.status, "code": err.code, "request_id": request_id}
    data.update(err.details)
    return {"code": rpc_code(err), "message": err.message, "data": data}


def error_message(rpc_id: str | int | None, err: GatewayError, request_id: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error_object(err, request_id)}


# Refusals that answer a well-formed request are JSON-RPC errors in an HTTP 200 (the client
# matches them to its request by id); these stay HTTP errors whatever the message: 401 (the
# OAuth challenge), 404 (the session is gone: the client must re-initialize), and the
# transport-level refusals.
_HTTP_LEVEL = frozenset({401, 404, 405, 406, 413, 415})
# ... and the transport's own refusals, whatever their status (MCP transports: 400 for a
# missing session id or a wrong MCP-Protocol-Version, 403 for an Origin not allowed).
_HTTP_LEVEL_CODES = frozenset({"missing_session", "protocol_version_mismatch",
                               "session_on_initialize", "origin_not_allowed"})


def http_status(err: GatewayError, rpc_id: str | int | None) -> int:
    if rpc_id is None or err.status in _HTTP_LEVEL or err.code in _HTTP_LEVEL_CODES:
        return err.status
    return 200
