"""A tiny, fully controllable OIDC issuer on 127.0.0.1 for the identity tests.

It serves discovery, JWKS and RFC 7662 introspection, counts every request per path, can be
taken "down" (503) or slowed, and signs tokens with keys the test owns -- including the
hostile ones no real IdP would mint (hand-built headers, raw signatures).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

AUDIENCE = "regogate"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64json(obj: Any) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def jwk(self) -> dict[str, Any]:
        algo = jwt.get_algorithm_by_name(self.alg)
        out: dict[str, Any] = json.loads(algo.to_jwk(self.public))
        out.update(kid=self.kid, use="sig", alg=self.alg)
        return out


def rsa_key(kid: str, alg: str = "RS256") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def ed_key(kid: str) -> SigningKey:
    return SigningKey(kid, "EdDSA", ed25519.Ed25519PrivateKey.generate())


def raw_token(header: Mapping[str, Any] | str, payload: Mapping[str, Any] | str, sig: bytes | str) -> str:
    """Assemble a compact JWS by hand (header/payload as objects or pre-encoded text)."""
    h = header if isinstance(header, str) else b64json(header)
    p = payload if isinstance(payload, str) else b64json(payload)
    s = sig if isinstance(sig, str) else b64url(sig)
    return f"{h}.{p}.{s}"


def sign_raw(key: SigningKey, header_json: str, payload_json: str, alg: str | None = None) -> str:
    """Sign exact JSON text (lets a test put duplicate keys on the wire)."""
    signing_input = f"{b64url(header_json.encode())}.{b64url(payload_json.encode())}"
    sig = jwt.get_algorithm_by_name(alg or key.alg).sign(signing_input.encode(), key.private)
    return f"{signing_input}.{b64url(sig)}"


@dataclass
class FakeIdp:
    keys: list[SigningKey]
    issuer: str = ""
    cache_control: str | None = "max-age=300"
    down: bool = False
    jwks_delay_s: float = 0.0
    discovery_issuer: str | None = None  # override to test issuer mismatch
    introspection_client: tuple[str, str] = ("gateway", "s3cret")
    active_tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)
    issuer_jwks_override: str | None = None  # a broken jwks_uri in discovery

    # -- minting -------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
            "azp": "chat-ui",
            "scope": "openid email",
            "email": "alice@example.com",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not ...}

    def token(self, key: SigningKey | None = None, *, typ: str | None = "at+jwt",
              header: Mapping[str, Any] | None = None, alg: str | None = None, **claims: Any) -> str:
        key = key or self.keys[0]
        # typ=None must put no typ on the wire: PyJWT adds "typ": "JWT" unless the header
        # names typ with a falsy value, which makes it drop the parameter.
        hdr: dict[str, Any] = {"kid": key.kid, "typ": typ}
        hdr.update(header or {})
        return jwt.encode(self.claims(**claims), key.private, algorithm=alg or key.alg, headers=hdr)

    # -- serving -------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/introspect", self._introspect)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        self.hits["discovery"] += 1
        if self.down:
            return web.Response(status=503)
        return web.json_response({
            "issuer": self.discovery_issuer or self.issuer,
            "jwks_uri": self.issuer_jwks_override or f"{self.issuer}/jwks",
            "introspection_endpoint": f"{self.issuer}/introspect",
        })

    async def _jwks(self, request: web.Request) -> web.Response:
        self.hits["jwks"] += 1
        if self.jwks_delay_s:
            await asyncio.sleep(self.jwks_delay_s)
        if self.down:
            return web.Response(status=503)
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        body = {"keys": [k.jwk() for k in self.keys] + self.extra_jwks}
        return web.json_response(body, headers=headers)

    async def _introspect(self, request: web.Request) -> web.Response:
        self.hits["introspect"] += 1
        if self.down:
            return web.Response(status=503)
        expected = "Basic " + base64.b64encode(":".join(self.introspection_client).encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"error": "invalid_client"}, status=401)
        form = await request.post()
        claims = self.active_tokens.get(str(form.get("token")))
        return web.json_response({"active": True, **claims} if claims else {"active": False})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"
