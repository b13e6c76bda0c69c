"""The OPA sidecar engine: OPA's REST data API through opa-python-client's AsyncOpaClient
(one pooled keep-alive session, ``retries=0``).

Fail closed: connection errors, non-2xx answers, timeouts (``timeout_s`` covers the whole
call, no retries -- a retry would blow the request's latency budget) and a missing
``result`` (undefined decision) all raise ``PolicyError``.

Traceability (docs/policy-contract.md, "Traceability"):

- ``decision_id`` is the gateway's request id, as with the embedded engine; OPA's own
  ``decision_id`` (present when OPA's decision logging is on) is ``engine_decision_id``.
- OPA's decision log entry carries the request id as ``input.request.id``, and the audit
  record carries OPA's ``decision_id``: the two join either way.
- the revision is the one OPA reports *for that decision*: each query asks for
  ``?provenance=true`` and the answer names the revision of every active bundle (the
  ``.manifest`` revision ``regogate policy build`` writes). A bundle without a revision (a
  plain directory) falls back to the last revision found at start or on ``ready()``:
  ``GET /v1/status`` (status plugin) -> ``data.system.bundles`` manifests / etags ->
  ``"opa:unknown"``.

"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from opa_client.opa_async import AsyncOpaClient

from pep.policy.contract import Decision
from pep.policy.engine import PolicyError, parse_decision

log = logging.getLogger("regogate.policy")

UNKNOWN_REVISION = "opa:unknown"


def _endpoint(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(
            f"policy.opa_url must be http(s)://host[:port], got {url!r}", "policy_unavailable"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PolicyError("policy.opa_url must not have a path", "policy_unavailable")
    ssl = parts.scheme == "https"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, parts.port or (443 if ssl else 8181), ssl


def _join(revs: list[str]) -> str | None:
    return ",".join(sorted(revs)) or None


def revision_from_provenance(provenance: Any) -> str | None:
    """Bundle revisions from a ``provenance`` block (``bundles`` map, or the legacy
    single-bundle ``revision``); ``None`` when OPA reports none."""
    if not isinstance(provenance, dict):
        return None
    bundles = provenance.get("bundles")
    if isinstance(bundles, dict):
        return _join([
            str(b["revision"]) for b in bundles.values() if isinstance(b, dict) and b.get("revision")
        ])
    legacy = provenance.get("revision")
    return str(legacy) if legacy else None


def _revision_from_status(status: Any) -> str | None:
    bundles = status.get("result", {}).get("bundles") if isinstance(status, dict) else None
    if not isinstance(bundles, dict):
        return None
    return _join([
        str(b["active_revision"])
        for b in bundles.values()
        if isinstance(b, dict) and b.get("active_revision")
    ])


def _revision_from_bundles(doc: Any) -> str | None:
    bundles = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(bundles, dict):
        return None
    revs: list[str] = []
    for b in bundles.values():
        if not isinstance(b, dict):
            continue
        manifest = b.get("manifest")
        rev = manifest.get("revision") if isinstance(manifest, dict) else None
        if rev:
            revs.append(str(rev))
        elif b.get("etag"):
            revs.append(f"etag:{b['etag']}")
    return _join(revs)


class OpaEngine:
    name = "opa"

    def __init__(
        self, url: str, decision: str = "regogate/decision", *, timeout_s: float = 0.5
    ) -> None:
        self._url = url
        self._decision = decision.strip("/").replace(".", "/").removeprefix("data/")
        self._timeout = timeout_s
        self._client: AsyncOpaClient | None = None
        self._revision = UNKNOWN_REVISION

    @property
    def revision(self) -> str:
        return self._revision

    async def start(self) -> None:
        host, port, ssl = _endpoint(self._url)
        # retries=0: fail fast and closed; the client keeps one pooled keep-alive session.
        client = AsyncOpaClient(host=host, port=port, ssl=ssl, retries=0, timeout=self._timeout)
        await client.__aenter__()
        self._client = client
        # OPA may still be starting: that is a readiness problem, not a start-up failure.
        await self._refresh_revision()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close_connection()
            self._client = None

    async def _refresh_revision(self) -> None:
        client = self._client
        if client is None:
            return
        for fetch, extract in (
            (client.get_status, _revision_from_status),
            (lambda: client.get_data("system/bundles"), _revision_from_bundles),
        ):
            try:
                async with asyncio.timeout(self._timeout):
                    rev = extract(await fetch())
            except Exception as exc:  # noqa: BLE001 - optional APIs (status plugin may be off)
                log.debug("OPA revision source unavailable: %s", type(exc).__name__)
                continue
            if rev:
                self._revision = rev
                return

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        client = self._client
        if client is None:
            raise PolicyError("policy engine not started", "policy_unavailable")
        request = policy_input.get("request")
        request_id = request.get("id") if isinstance(request, dict) else None
        rid = request_id if isinstance(request_id, str) else None
        try:
            async with asyncio.timeout(self._timeout):
                # provenance: OPA names the revision of the bundles that made this decision.
                answer = await client.query_rule(policy_input, self._decision,
                                                 query_params={"provenance": True})
        except TimeoutError as exc:
            raise PolicyError(
                f"OPA did not answer within {self._timeout}s", "policy_timeout"
            ) from exc
        except aiohttp.ClientResponseError as exc:
            # OPA answers 500 for evaluation errors (conflicts, builtin errors) and 400 for
            # a request it cannot parse; either way this input cannot be decided.
            code = "policy_invalid" if exc.status in (400, 500) else "policy_unavailable"
            raise PolicyError(f"OPA answered HTTP {exc.status}", code) from exc
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            raise PolicyError(
                f"OPA unreachable: {type(exc).__name__}", "policy_unavailable"
            ) from exc
        if not isinstance(answer, dict):
            raise PolicyError("OPA returned a non-object response", "policy_invalid")
        revision = revision_from_provenance(answer.get("provenance"))
        if revision is not None:
            self._revision = revision
        engine_id = answer.get("decision_id")
        # {"result": ...} absent means the decision is undefined.
        return parse_decision(
            answer.get("result"),
            revision=revision or self._revision,
            decision_id=rid,
            engine_decision_id=engine_id if isinstance(engine_id, str) else None,
        )

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {"engine": self.name, "url": self._url}
        client = self._client
        # ?bundles: not ready until OPA has activated its bundles (a bundle service may still
        # be downloading), as OPA's own health check defines.
        ok = client is not None and await client.check_health({"bundles": True})
        if ok:
            await self._refresh_revision()
        else:
            detail["error"] = "opa_not_healthy"
        detail["revision"] = self._revision
        return ok, detail
