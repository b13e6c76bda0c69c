"""``io.jwt.verify_*`` and ``io.jwt.decode_verify`` (OPA semantics) on PyJWT.

Keys are given as OPA takes them: a PEM public key or certificate, or a JWKS JSON string
(every key is tried, the ``kid`` first); HMAC secrets as plain strings. A token that fails
verification is ``false`` (``[false, {}, {}]`` for decode_verify), a malformed one is a
builtin error (undefined). These run in the policy, not on the identity path: the gateway
verifies access tokens itself (pep/auth) with pinned keys.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import orjson
from cryptography import x509
from jwt.algorithms import get_default_algorithms

from pep.policy.builtins_text import BuiltinError, text

_ALGS = get_default_algorithms()


def _split(token: Any, fn: str) -> tuple[dict[str, Any], dict[str, Any]]:
    token = text(token, fn)
    try:
        header = jwt.get_unverified_header(token)
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise BuiltinError(f"{fn}: malformed token") from exc
    return header, payload


def _keys(material: str, alg: str, kid: str | None) -> list[Any]:
    """Candidate verification keys, in the order to try."""
    algorithm = _ALGS[alg]
    if alg.startswith("HS"):
        return [material.encode()]
    stripped = material.strip()
    if stripped.startswith("{"):
        try:
            doc = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise BuiltinError("io.jwt: invalid JWKS") from exc
        jwks = doc.get("keys", [doc]) if isinstance(doc, dict) else []
        ordered = sorted(jwks, key=lambda k: 0 if kid and k.get("kid") == kid else 1)
        out: list[Any] = []
        for jwk in ordered:
            try:
                out.append(algorithm.from_jwk(orjson.dumps(jwk).decode()))
            except (jwt.PyJWTError, ValueError, KeyError, TypeError):
                continue  # a key of another type
        return out
    if "BEGIN CERTIFICATE" in stripped:
        try:
            return [x509.load_pem_x509_certificate(stripped.encode()).public_key()]
        except ValueError as exc:
            raise BuiltinError("io.jwt: invalid certificate") from exc
    return [stripped.encode()]


def _verified(token: str, material: str, alg: str) -> bool:
    header, _ = _split(token, f"io.jwt.verify_{alg.lower()}")
    if header.get("alg") != alg:
        return False
    for key in _keys(material, alg, header.get("kid")):
        try:
            with warnings.catch_warnings():
                # OPA accepts short HMAC secrets; the policy author chose the key.
                warnings.simplefilter("ignore")
                jwt.api_jws.PyJWS().decode_complete(token, key, algorithms=[alg])
        except (jwt.InvalidSignatureError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        except jwt.PyJWTError:
            continue
        return True
    return False


def _verify(alg: str) -> Callable[[Any, Any], bool]:
    fn = f"io.jwt.verify_{alg.lower()}"

    def run(token: Any, key: Any) -> bool:
        return _verified(text(token, fn), text(key, fn), alg)

    return run


def decode_verify(token: Any, constraints: Any) -> list[Any]:
    fn = "io.jwt.decode_verify"
    token = text(token, fn)
    if not isinstance(constraints, dict):
        raise BuiltinError(f"{fn}: constraints must be an object")
    header, payload = _split(token, fn)
    invalid: list[Any] = [False, {}, {}]
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _ALGS or alg == "none":
        return invalid
    if "alg" in constraints and constraints["alg"] != alg:
        return invalid
    material = constraints.get("secret") if alg.startswith("HS") else constraints.get("cert")
    if not isinstance(material, str) or not _verified(token, material, alg):
        return invalid
    now_ns = constraints.get("time", time.time_ns())
    if not isinstance(now_ns, (int, float)):
        raise BuiltinError(f"{fn}: time must be a number")
    now = now_ns / 1e9
    exp, nbf = payload.get("exp"), payload.get("nbf")
    if isinstance(exp, (int, float)) and now >= exp:
        return invalid
    if isinstance(nbf, (int, float)) and now < nbf:
        return invalid
    if "iss" in constraints and payload.get("iss") != constraints["iss"]:
        return invalid
    aud = payload.get("aud")
    want = constraints.get("aud")
    if aud is not None or want is not None:
        auds = aud if isinstance(aud, list) else [aud]
        if want is None or want not in auds:
            return invalid
    return [True, header, payload]


JWT_EXTENSIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    **{f"io.jwt.verify_{a.lower()}": (2, _verify(a)) for a in (
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "HS256", "HS384", "HS512")},
    "io.jwt.decode_verify": (2, decode_verify),
}
