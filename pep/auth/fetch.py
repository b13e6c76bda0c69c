"""Fetching IdP documents (discovery, JWKS, introspection) with the rules issue 3 sets.

- https only, except loopback hosts, unless the issuer sets ``allow_insecure_http``;
- redirects are followed by hand and only within the same origin (scheme, host, port):
  a redirect to another host could hand key material selection to someone else;
- bounded response size and time; the body must be a JSON object.
Errors are ``FetchError`` with a message safe to log (no secrets, no response bodies).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

MAX_REDIRECTS = 3


class FetchError(Exception):
    """An IdP endpoint could not be used; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    allow_insecure_http: bool
    timeout_s: float
    max_bytes: int


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str | URL, policy: FetchPolicy) -> URL:
    u = URL(url) if isinstance(url, str) else url
    if not u.is_absolute() or u.scheme not in ("https", "http") or not u.host:
        raise FetchError(f"not an absolute http(s) URL: {str(u)[:200]}")
    if u.user or u.password:
        raise FetchError("URLs with credentials are not accepted")
    if u.scheme == "http" and not (policy.allow_insecure_http or is_loopback_host(u.host)):
        raise FetchError(f"plain http is refused for non-loopback host {u.host}")
    return u


def _same_origin(a: URL, b: URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)  # port: the scheme's default if none


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.content_length is not None and resp.content_length > limit:
        raise FetchError(f"response larger than {limit} bytes")
    # Until EOF: one read() returns only what has arrived, which may be part of the body.
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise FetchError(f"response larger than {limit} bytes")
    return bytes(body)


async def fetch_json(
    session: aiohttp.ClientSession,
    url: str,
    policy: FetchPolicy,
    *,
    method: str = "GET",
    form: dict[str, str] | None = None,
    authorization: str | None = None,
) -> tuple[dict[str, Any], CIMultiDictProxy[str]]:
    """GET (or POST a form to) ``url``; return the JSON object and the response headers."""
    target = check_url(url, policy)
    origin = target
    timeout = aiohttp.ClientTimeout(total=policy.timeout_s)
    headers_out = {"Accept": "application/json"}
    if authorization is not None:
        headers_out["Authorization"] = authorization
    try:
        for _ in range(MAX_REDIRECTS + 1):
            async with session.request(
                method,
                target,
                data=form,
                allow_redirects=False,
                timeout=timeout,
                headers=headers_out,
            ) as resp:
                if resp.status in (301, 302, 303, 307, 308) and method == "GET":
                    location = resp.headers.get("Location")
                    if not location:
                        raise FetchError(f"redirect without Location from {target.host}")
                    nxt = check_url(target.join(URL(location)), policy)
                    if not _same_origin(origin, nxt):
                        raise FetchError(f"redirect from {origin.host} to another origin refused")
                    target = nxt
                    continue
                if resp.status != 200:
                    raise FetchError(f"{target.host} answered HTTP {resp.status}")
                body = await _read_limited(resp, policy.max_bytes)
                headers = resp.headers
                break
        else:
            raise FetchError(f"too many redirects from {origin.host}")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise FetchError(f"cannot reach {target.host}: {type(exc).__name__}") from exc
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise FetchError(f"{target.host} returned a body that is not JSON") from exc
    if not isinstance(doc, dict):
        raise FetchError(f"{target.host} returned JSON that is not an object")
    return doc, headers


def max_age(headers: CIMultiDictProxy[str], lo: float, hi: float) -> float:
    """Cache lifetime from Cache-Control, clamped to [lo, hi]; absent or no-cache -> lo."""
    age: float = lo
    for directive in headers.get("Cache-Control", "").split(","):
        name, _, value = directive.strip().partition("=")
        name = name.lower()
        if name in ("no-cache", "no-store"):
            return lo
        if name in ("max-age", "s-maxage"):
            try:
                age = max(age, float(int(value.strip().strip('"'))))
            except ValueError:
                continue
    return min(max(age, lo), hi)
