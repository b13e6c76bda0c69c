"""OPA's bundle signature verification (``opa run --verification-key``), for the test server.

As OPA does: ``.signatures.json`` holds one JWS; its key is the verification key; its payload
lists every file of the bundle but ``.signatures.json`` itself, each with a digest. A JSON
file (``*.json``, ``.manifest``) is digested over the canonical encoding of its parsed content
(sorted keys, compact), any other file over its bytes. A file missing from the list, a listed
file missing from the bundle, or a digest that differs refuses the bundle.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jwt

from tests.opa_double.oracle import OpaBundle

_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
         "EdDSA"]


class SignatureError(Exception):
    """The bundle's signature is missing or does not match its files."""


def _digest(name: str, raw: bytes) -> str:
    if name.endswith(".json") or name == ".manifest":
        text = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        raw = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
    return hashlib.sha256(raw).hexdigest()


def verify(bundle: OpaBundle, public_key_pem: bytes) -> dict[str, Any]:
    if not bundle.signatures or not bundle.signatures.get("signatures"):
        raise SignatureError("bundle is not signed (.signatures.json missing or empty)")
    tokens = bundle.signatures["signatures"]
    if len(tokens) != 1:
        raise SignatureError("exactly one signature expected")
    try:
        claims: dict[str, Any] = jwt.decode(tokens[0], public_key_pem, algorithms=_ALGS)
    except jwt.PyJWTError as exc:
        raise SignatureError(f"signature does not verify: {exc}") from exc
    listed = {f["name"].lstrip("/"): f for f in claims.get("files", [])}
    present = {n: raw for n, raw in bundle.raw_files.items() if n != ".signatures.json"}
    for name, raw in present.items():
        entry = listed.get(name)
        if entry is None:
            raise SignatureError(f"{name}: not covered by the signature")
        if entry.get("algorithm") != "SHA-256" or entry.get("hash") != _digest(name, raw):
            raise SignatureError(f"{name}: digest does not match the signature")
    missing = set(listed) - set(present)
    if missing:
        raise SignatureError(f"signed files missing from the bundle: {sorted(missing)}")
    return claims
