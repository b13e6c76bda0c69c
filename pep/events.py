"""Events to other systems: CloudEvents 1.0 (structured JSON, the ``cloudevents`` SDK) POSTed
to the sinks in ``events.sinks``.

    dev.regogate.policy.denied            a request refused by policy (403)
    dev.regogate.quota.exceeded           a request refused by a quota reason (429)
    dev.regogate.quota.threshold          a quota or budget counter reached 80 % / 100 % of
                                          its limit (data.percent; see pep/usage/thresholds.py)
    dev.regogate.audit.write_failed       the audit store could not record a request
    dev.regogate.audit.integrity_failed   a verification (GET /audit/v1/verify) found a break
    dev.regogate.circuit_breaker.opened   a deployment's breaker opened / closed again
    dev.regogate.circuit_breaker.closed

Each delivery carries ``X-Regogate-Signature: sha256=<hex HMAC-SHA256 of the body>`` with the
sink's secret (verify before trusting the body), is retried with exponential backoff, and
never blocks a request: ``emit`` only puts the event on the sink's bounded queue; when the
queue is full the event is dropped and counted (``regogate_events_dropped_total``). Event
data names who and what (subject, model, reason codes, request id), never prompt text,
tokens or keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import Field, SecretStr

from pep.settings_base import Frozen

log = logging.getLogger("regogate.events")

TYPES = ("policy.denied", "quota.exceeded", "quota.threshold", "audit.write_failed",
         "audit.integrity_failed", "circuit_breaker.opened", "circuit_breaker.closed")
TYPE_PREFIX = "dev.regogate."
SIGNATURE_HEADER = "X-Regogate-Signature"


class SinkSettings(Frozen):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")  # label in metrics
    url: str
    secret: SecretStr  # HMAC-SHA256 key for X-Regogate-Signature
    types: tuple[str, ...] = TYPES  # which events this sink wants


class EventSettings(Frozen):
    sinks: tuple[SinkSettings, ...] = ()
    source: str = "urn:regogate"  # CloudEvents ``source`` (e.g. this deployment's URL)
    queue_size: int = Field(1000, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_s: float = Field(0.5, gt=0)
    timeout_s: float = Field(5.0, gt=0)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Sink:
    def __init__(self, settings: SinkSettings, queue_size: int) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue(queue_size)
        self.task: asyncio.Task[None] | None = None


class EventBus:
    def __init__(self, settings: EventSettings, session: aiohttp.ClientSession,
                 metrics: Any) -> None:
        self._settings = settings
        self._session = session
        self._metrics = metrics
        self._sinks = [_Sink(s, settings.queue_size) for s in settings.sinks]
        self._format = JSONFormat()
        self.sleep: Callable[[float], Any] = asyncio.sleep

    async def start(self) -> None:
        for sink in self._sinks:
            sink.task = asyncio.create_task(self._deliver(sink),
                                            name=f"events-{sink.settings.name}")

    async def close(self) -> None:
        for sink in self._sinks:
            if sink.task is not None:
                sink.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sink.task

    def emit(self, kind: str, subject: str | None, data: dict[str, Any]) -> None:
        """Queue an event for every sink that wants it. Never waits, never raises."""
        wanted = [s for s in self._sinks if kind in s.settings.types]
        if not wanted:
            return
        attrs: dict[str, Any] = {"type": TYPE_PREFIX + kind, "source": self._settings.source,
                                 "datacontenttype": "application/json"}
        if subject:
            attrs["subject"] = subject
        message = to_structured(CloudEvent(attrs, data), self._format)
        for sink in wanted:
            try:
                sink.queue.put_nowait((dict(message.headers), message.body))
            except asyncio.QueueFull:
                self._metrics.inc("events_dropped_total", sink=sink.settings.name)

    async def _deliver(self, sink: _Sink) -> None:
        s, name = self._settings, sink.settings.name
        timeout = aiohttp.ClientTimeout(total=s.timeout_s)
        while True:
            headers, body = await sink.queue.get()
            headers[SIGNATURE_HEADER] = sign(sink.settings.secret.get_secret_value(), body)
            for attempt in range(s.max_attempts):
                try:
                    async with self._session.post(sink.settings.url, data=body, headers=headers,
                                                  timeout=timeout, allow_redirects=False) as r:
                        if r.status < 300:
                            self._metrics.inc("events_delivered_total", sink=name)
                            break
                        why = f"HTTP {r.status}"
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    why = type(exc).__name__
                if attempt + 1 < s.max_attempts:
                    await self.sleep(s.backoff_s * 2 ** attempt)
            else:
                self._metrics.inc("events_failed_total", sink=name)
                log.warning("event for sink %s not delivered after %d attempts (%s)", name,
                            s.max_attempts, why)
