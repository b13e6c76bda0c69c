"""The cache key: a canonical hash of everything that changes the answer, and who may see it.

    sha256(canonical JSON of {api, model, deployments, body, scope, scope value, revision})

``body`` is the canonical request *as forwarded* (after reroute, caps, redaction and system
prompt), minus the transport-only fields (``stream``, ``stream_options``), so a plain request
and a streaming one share an entry. The scope value is the verified identity the entry is
partitioned by (issuer + sub for ``user``; issuer + team, client or issuer alone otherwise)
and the policy revision is part of the key, so a new policy never serves answers cached
under the old one. No token bytes, header or secret ever enter the key.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from pep.policy.contract import CacheObligation
from pep.principal import Principal

KEY_VERSION = 1
_TRANSPORT_ONLY = frozenset({"stream", "stream_options"})


def scope_value(scope: str, principal: Principal) -> str | None:
    """The identity an entry is partitioned by; None when the caller has none (no caching)."""
    if scope == "user":
        return f"user\n{principal.issuer}\n{principal.sub}"
    if scope == "team":
        team = principal.team
        return f"team\n{principal.issuer}\n{team}" if team else None
    if scope == "client":
        client = principal.client_id
        return f"client\n{principal.issuer}\n{client}" if client else None
    if scope == "org":
        return f"org\n{principal.issuer}"
    return None


def not_cacheable(body: dict[str, Any], ob: CacheObligation) -> str | None:
    """Why this request cannot be cached under this obligation (None: it can)."""
    n = body.get("n")
    if n is not None and n != 1:
        return "n"
    if body.get("logprobs") or body.get("top_logprobs"):
        return "logprobs"
    temperature = body.get("temperature")
    # Unset means the provider's default sampling, which is not deterministic either.
    sampled = temperature is None or not isinstance(temperature, (int, float)) or temperature > 0
    if sampled and not ob.sampled:
        return "sampled"
    return None


def cache_key(
    *,
    api: str,
    model: str,
    deployments: tuple[str, ...],
    body: dict[str, Any],
    scope_value: str,
    revision: str,
) -> str:
    doc = {
        "v": KEY_VERSION,
        "api": api,
        "model": model,
        "deployments": deployments,
        "body": {k: v for k, v in body.items() if k not in _TRANSPORT_ONLY},
        "scope": scope_value,
        "revision": revision,
    }
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
