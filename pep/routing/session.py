"""The HTTP client session for providers (and MCP upstream servers), built in one place.

    provider_session() -> aiohttp.ClientSession

* The connector never queues: the router bounds each provider itself
  (``providers.*.max_connections`` with its own ``pool_timeout_s``), so a wait in here would
  surface as a provider timeout and open the circuit breaker. Idle keep-alive connections
  are kept 30 s.
* Answers are decompressed (``auto_decompress``): a provider may gzip its answer.
* **No cookie jar** (``DummyCookieJar``): the session is shared by every user of the
  gateway, so a cookie a provider sets (Cloudflare's ``__cf_bm`` and ``_cfuvid`` come with
  OpenAI's answers) would otherwise be stored and sent back on every later request, for
  every user: one person's bot-management token replayed for all, a header not built from
  configuration (GUIDE.md 3.6), and a jar lookup (expiry, domain and path matching, the
  ``Cookie`` header) on every request. Nothing the gateway calls needs cookies.
* No trace configs, no session-wide default headers, ``trust_env`` off (no proxy or netrc
  from the environment): what is sent is what the adapter built.
"""

from __future__ import annotations

import aiohttp

KEEPALIVE_S = 30.0


def provider_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=KEEPALIVE_S)
    return aiohttp.ClientSession(connector=connector, auto_decompress=True,
                                 cookie_jar=aiohttp.DummyCookieJar(),
                                 trust_env=False)
