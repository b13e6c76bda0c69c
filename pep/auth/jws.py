"""Strict compact-JWS parsing, done before any crypto library sees a token (GUIDE.md 3.3).

What is refused here, and why:
- anything but three canonical base64url segments (no padding, no stray bits, no JSON
  serialization): two encodings of one token must not exist, or caches keyed by the token
  and deny decisions could be sidestepped;
- a header or payload that is not a JSON object in strict UTF-8, has duplicate keys
  (parsers disagree on which one wins), NaN/Infinity, or lone surrogates;
- ``crit`` (RFC 7515 4.1.11: we understand no extension, so any critical one is a reject),
  ``b64``, JWE / compression headers;
- ``jku``, ``x5u``, ``jwk``, ``x5c``: keys come from the issuer's configured JWKS only, so a
  token offering its own key is hostile or broken either way.
The caller has already bounded the size. Errors never contain token bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from pep.errors import Unauthorized

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit", "b64", "enc", "zip")
MAX_KID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class ParsedJWS:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return self.header["alg"]  # type: ignore[no-any-return]  # checked in parse_compact

    @property
    def kid(self) -> str | None:
        return self.header.get("kid")


def _bad(message: str) -> Unauthorized:
    return Unauthorized(message, code="invalid_token")


def b64url_decode(segment: str, what: str) -> bytes:
    """Decode one base64url segment, refusing every non-canonical spelling."""
    if len(segment) % 4 == 1 or _B64URL.fullmatch(segment) is None:
        raise _bad(f"token {what} is not canonical base64url")
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _bad(f"token {what} is not canonical base64url") from exc
    # Non-zero padding bits decode fine but re-encode differently: a second spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != segment:
        raise _bad(f"token {what} is not canonical base64url")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        obj = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        # Lone surrogates parse in Python but break every later JSON encoder (audit, OPA).
        if _SURROGATE_ESCAPE.search(text) is not None:
            orjson.dumps(obj)
    except (UnicodeDecodeError, ValueError, RecursionError, orjson.JSONEncodeError) as exc:
        raise _bad(f"token {what} is not a valid JSON object") from exc
    if not isinstance(obj, dict):
        raise _bad(f"token {what} is not a JSON object")
    return obj


def parse_compact(token: str) -> ParsedJWS:
    """Parse a compact JWS strictly; the signature is *not* checked here."""
    parts = token.split(".")
    if len(parts) != 3:
        raise _bad("token is not a compact JWS")
    h64, p64, s64 = parts
    if not h64 or not p64 or not s64:
        raise _bad("token has an empty segment")
    header = strict_json_object(b64url_decode(h64, "header"), "header")
    payload = strict_json_object(b64url_decode(p64, "payload"), "payload")
    signature = b64url_decode(s64, "signature")

    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise _bad("token header has no algorithm")
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise _bad(f"token header parameter {name!r} is not accepted")
    kid = header.get("kid")
    if "kid" in header and (not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH):
        raise _bad("token key id is malformed")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise _bad("token type header is malformed")
    return ParsedJWS(header, payload, f"{h64}.{p64}".encode("ascii"), signature)
