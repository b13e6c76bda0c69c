"""The registry of Python extensions of the embedded engine (regorus 0.13).

``EXTENSIONS`` adds OPA builtins regorus lacks and *replaces* (an extension shadows a native
builtin of the same name) those regorus computes differently from OPA; the implementations
live in ``builtins_text/net/jwt/time/fmt.py``, each pinned by conformance cases. What cannot
be made exact is refused at load (``REFUSED`` here, constructs in ``support.py``), so a
policy never decides differently on the embedded engine and on the OPA sidecar.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import orjson

from pep.policy.builtins_fmt import FMT_EXTENSIONS
from pep.policy.builtins_jwt import JWT_EXTENSIONS
from pep.policy.builtins_net import NET_EXTENSIONS
from pep.policy.builtins_text import ARITH, TEXT_EXTENSIONS
from pep.policy.builtins_text import BuiltinError as _BuiltinError
from pep.policy.builtins_time import TIME_EXTENSIONS

# The arithmetic operators, routed to exact decimal arithmetic (nonstrict.rewrite_arith).
ARITH_OPS = {"Add": ("+", "add"), "Sub": ("-", "sub"), "Mul": ("*", "mul"),
             "Div": ("/", "div"), "Mod": ("%", "rem")}


def _text(value: Any, fn: str) -> bytes:
    if not isinstance(value, str):
        raise _BuiltinError(f"{fn}: operand must be a string")
    return value.encode("utf-8")


def _digest(name: str) -> Callable[[Any], str]:
    fn = f"crypto.{name}"

    def run(x: Any) -> str:
        return hashlib.new(name, _text(x, fn)).hexdigest()

    return run


def _hmac(name: str) -> Callable[[Any, Any], str]:
    fn = f"crypto.hmac.{name}"

    def run(x: Any, key: Any) -> str:
        return hmac.new(_text(key, fn), _text(x, fn), name).hexdigest()

    return run


def _hmac_equal(a: Any, b: Any) -> bool:
    return hmac.compare_digest(_text(a, "crypto.hmac.equal"), _text(b, "crypto.hmac.equal"))


def _b64url(segment: str) -> bytes:
    # JWS uses unpadded base64url (RFC 7515 section 2); OPA tolerates padding too.
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _BuiltinError("io.jwt.decode: invalid base64url segment") from exc


def _jwt_decode(token: Any) -> list[Any]:
    """``io.jwt.decode``: [header, payload, signature as hex]; no verification (as OPA)."""
    if not isinstance(token, str):
        raise _BuiltinError("io.jwt.decode: operand must be a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise _BuiltinError("io.jwt.decode: encoded JWT must have 3 sections")
    try:
        header = orjson.loads(_b64url(parts[0]))
        payload = orjson.loads(_b64url(parts[1]))
    except orjson.JSONDecodeError as exc:
        raise _BuiltinError("io.jwt.decode: segment is not JSON") from exc
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise _BuiltinError("io.jwt.decode: header and payload must be objects")
    return [header, payload, _b64url(parts[2]).hex()]


EXTENSIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "crypto.md5": (1, _digest("md5")),
    "crypto.sha1": (1, _digest("sha1")),
    "crypto.sha256": (1, _digest("sha256")),
    "crypto.hmac.md5": (2, _hmac("md5")),
    "crypto.hmac.sha1": (2, _hmac("sha1")),
    "crypto.hmac.sha256": (2, _hmac("sha256")),
    "crypto.hmac.sha512": (2, _hmac("sha512")),
    "crypto.hmac.equal": (2, _hmac_equal),
    "io.jwt.decode": (1, _jwt_decode),
    **TEXT_EXTENSIONS,
    **NET_EXTENSIONS,
    **TIME_EXTENSIONS,
    **JWT_EXTENSIONS,
    **FMT_EXTENSIONS,
    **{f"__arith.{name}": (2, ARITH[op]) for op, (_, name) in ARITH_OPS.items()},
}

# Builtins regorus *has* but which do not behave as in OPA, or which a gateway policy must
# not use because evaluation has to stay local and deterministic. ``policy check`` refuses
# them. (regorus' http.send is silently undefined; net.lookup_ip_addr is missing.)
REFUSED: dict[str, str] = {
    "http.send": "network calls from policy are not allowed (regorus returns undefined)",
    "net.lookup_ip_addr": "DNS lookups from policy are not allowed",
    "opa.runtime": "differs between the embedded engine and OPA",
    "json.match_schema": "its result shape differs from OPA's on the embedded engine",
    **{name: (
        "regorus' YAML differs from OPA's (Go, YAML 1.1): `yes`/`on` and `012` decode as "
        "strings, not true and 10; a multi-document string does not decode; marshal quotes "
        "differently"
    ) for name in ("yaml.marshal", "yaml.unmarshal", "yaml.is_valid")},
    "graph.reachable_paths": (
        "differs on cyclic graphs between the embedded engine and OPA (and between OPA "
        "releases)"
    ),
}


def register(engine: Any) -> None:
    """Add every extension to a fresh ``regorus.Engine``."""
    for path, (nargs, fn) in EXTENSIONS.items():
        engine.add_extension(path, nargs, fn)
