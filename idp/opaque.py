"""Opaque access tokens: random strings whose claims only the issuing server knows (RFC 7662).

Kept in memory, bounded, keyed by a SHA-256 of the whole token (so the table never holds a
usable credential); a server restart makes every opaque token inactive, like a revocation.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

MAX_OPAQUE_TOKENS = 10_000


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class OpaqueTokenStore:
    def __init__(self, max_tokens: int = MAX_OPAQUE_TOKENS) -> None:
        self._max = max_tokens
        self._tokens: OrderedDict[bytes, dict[str, Any]] = OrderedDict()
        # The sync test helper issues tokens from another thread than the server's loop.
        self._lock = threading.Lock()

    def issue(self, claims: dict[str, Any]) -> str:
        token = "rgo_" + secrets.token_urlsafe(32)  # prefix: never mistaken for a JWT
        with self._lock:
            self._tokens[_digest(token)] = dict(claims)
            while len(self._tokens) > self._max:
                self._tokens.popitem(last=False)
        return token

    def lookup(self, token: str) -> dict[str, Any] | None:
        """Claims of a live token; expired ones are dropped on sight."""
        key = _digest(token)
        with self._lock:
            claims = self._tokens.get(key)
            if claims is None:
                return None
            if claims.get("exp", 0) <= time.time():
                del self._tokens[key]
                return None
            return dict(claims)

    def revoke(self, token: str) -> bool:
        with self._lock:
            return self._tokens.pop(_digest(token), None) is not None
