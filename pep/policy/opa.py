"""The OPA sidecar engine: OPA's REST data API over one pooled keep-alive aiohttp session.

Fail closed: connection errors, non-2xx answers, timeouts (``timeout_s`` covers the whole
call, no retries -- a retry would blow the request's latency budget) and a missing
``result`` (undefined decision) all raise ``PolicyError``.

Traceability (docs/policy-contract.md, "Traceability"):

- ``decision_id`` is the gateway's request id, as with the embedded engine; OPA's own
  ``decision_id`` (present when OPA's decision logging is on) is ``engine_decision_id``.
- every decision request carries ``x-request-id: <request id>``, which OPA copies into its
  decision log entry when configured with ``decision_logs.request_context.http.headers``
  (deploy/opa-config.yaml); the entry's ``input.request.id`` carries it too.
- the revision is the one OPA reports *for that decision*: each query asks for
  ``?provenance=true`` and the answer names the revision of every active bundle (the
  ``.manifest`` revision ``regogate policy build`` writes). A bundle without a revision (a
  plain directory) falls back to the last revision found at start or on ``ready()``:
  ``GET /v1/status`` (status plugin) -> ``data.system.bundles`` manifests / etags ->
  ``"opa:unknown"``.

The body is encoded with orjson and the path is built once; opa-python-client was dropped
here because it cannot send a per-request header.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from pep.policy.contract import Decision
from pep.policy.engine import PolicyError, parse_decision

log = logging.getLogger("regogate.policy")

UNKNOWN_REVISION = "opa:unknown"


def _base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PolicyError(
            f"policy.opa_url must be http(s)://host[:port], got {url!r}", "policy_unavailable"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PolicyError("policy.opa_url must not have a path", "policy_unavailable")
    port = parts.port or (443 if parts.scheme == "https" else 8181)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}"


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
        self._session: aiohttp.ClientSession | None = None
        self._base = ""
        self._data_url = ""
        self._revision = UNKNOWN_REVISION

    @property
    def revision(self) -> str:
        return self._revision

    async def start(self) -> None:
        self._base = _base_url(self._url)
        self._data_url = f"{self._base}/v1/data/{self._decision}?provenance=true"
        # One pooled keep-alive session; no retries: fail fast and closed.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=30),
        )
        # OPA may still be starting: that is a readiness problem, not a start-up failure.
        await self._refresh_revision()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _get_json(self, path: str) -> Any:
        assert self._session is not None
        async with self._session.get(self._base + path) as resp:
            resp.raise_for_status()
            return orjson.loads(await resp.read())

    async def _refresh_revision(self) -> None:
        if self._session is None:
            return
        for path, extract in (
            ("/v1/status", _revision_from_status),
            ("/v1/data/system/bundles", _revision_from_bundles),
        ):
            try:
                async with asyncio.timeout(self._timeout):
                    rev = extract(await self._get_json(path))
            except Exception as exc:  # noqa: BLE001 - optional APIs (status plugin may be off)
                log.debug("OPA revision source %s unavailable: %s", path, type(exc).__name__)
                continue
            if rev:
                self._revision = rev
                return

    async def _query(self, body: bytes, request_id: str | None) -> tuple[int, bytes]:
        session = self._session
        if session is None:
            raise PolicyError("policy engine not started", "policy_unavailable")
        headers = {"Content-Type": "application/json"}
        if request_id:
            headers["X-Request-Id"] = request_id
        async with session.post(self._data_url, data=body, headers=headers) as resp:
            return resp.status, await resp.read()

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        request = policy_input.get("request")
        request_id = request.get("id") if isinstance(request, dict) else None
        rid = request_id if isinstance(request_id, str) else None
        try:
            async with asyncio.timeout(self._timeout):
                status, raw = await self._query(orjson.dumps({"input": policy_input}), rid)
        except TimeoutError as exc:
            raise PolicyError(
                f"OPA did not answer within {self._timeout}s", "policy_timeout"
            ) from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise PolicyError(
                f"OPA unreachable: {type(exc).__name__}", "policy_unavailable"
            ) from exc
        if status != 200:
            # OPA answers 500 for evaluation errors (conflicts, builtin errors) and 400 for
            # a request it cannot parse; either way this input cannot be decided.
            code = "policy_invalid" if status in (400, 500) else "policy_unavailable"
            raise PolicyError(f"OPA answered HTTP {status}", code)
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise PolicyError("OPA returned invalid JSON", "policy_invalid") from exc
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
        ok = False
        if self._session is not None:
            try:
                async with asyncio.timeout(self._timeout):
                    # ?bundles: not ready until OPA has activated its bundles (a bundle
                    # service may still be downloading), as OPA's own health check defines.
                    await self._get_json("/health?bundles")
                ok = True
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                detail["error"] = type(exc).__name__
        if ok:
            await self._refresh_revision()
        detail["revision"] = self._revision
        return ok, detail
