"""Model name -> deployments -> provider call, with retries, fallback and a circuit breaker.

    chat(body, model) -> Completion | ChunkStream
      for each deployment (ordered, or first pick by weight), skipping open circuits:
        try up to 1 + max_retries times, backing off, on 429 / 5xx / timeout / connection
        error *before the first byte*; then fall back to the next deployment.
      A 400 the first deployment raises (unsupported parameter, provider rejected the
      request) goes straight to the client: retrying elsewhere would hide the cause.
      A Retry-After longer than max_retry_wait_s is not retried in place.

Each provider has a connection pool of ``max_connections`` (a per-provider semaphore held
from sending the request until its response or stream is released; aiohttp's own
connector is unbounded beneath it). Waiting for a free connection is bounded separately
from the provider's deadlines by ``pool_timeout_s``: running out is *our* capacity limit,
so it answers 503 + Retry-After (``upstream_pool_exhausted``), moves on to the next
deployment and never feeds the circuit breaker -- a healthy provider behind a busy pool
must not be marked as failing.

The router owns all I/O; adapters are pure. Upstream headers are built from configuration
only, so inbound credentials can never be forwarded (GUIDE.md 3.6), and nothing in a
request picks a URL (3.7). ``Served.attempts`` lists every try for the audit; a failure is
raised as ``RouteFailed`` (pep.routing.outcome) with the client-facing error, the same
list and the last deployment tried. Adapters are ``adapters.base`` objects; the optional
capabilities a deployment uses (embeddings, prepared state, in-process transport) are
looked up once, when the router is built.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from adapters import provider_errors, registry
from adapters.canonical import (
    check_tools,
    content_text,
    encode_embeddings_base64,
    estimate_prompt_tokens,
    estimate_tokens,
    require_messages,
)
from adapters.base import ChatAdapter, EmbeddingsAdapter, InProcessAdapter, PreparingAdapter
from adapters.types import Completion, Served, Target, UpstreamRequest, Usage
from pep.errors import (
    BadRequest,
    GatewayError,
    NotFound,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from pep.routing.breaker import CircuitBreaker
from pep.routing.outcome import RouteFailed
from pep.routing.settings import ModelSettings, ProviderSettings
from pep.routing.stream import ChunkStream

log = logging.getLogger("regogate.routing")

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
_MAX_URLS = 1024


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    kind: str  # adapter kind of the first deployment (PolicyInput.request.provider)
    provider: str  # provider name from config
    upstream_model: str
    embeddings: bool
    description: str | None


@dataclass(slots=True)
class _Deployment:
    target: Target
    adapter: ChatAdapter
    breaker: CircuitBreaker
    timeout: aiohttp.ClientTimeout
    weight: int
    pool: asyncio.Semaphore
    embeddings: EmbeddingsAdapter | None  # the adapter, when it has an embeddings API
    in_process: InProcessAdapter | None  # the adapter, when it answers without a network

    def label(self) -> str:
        return f"{self.target.settings.kind} provider {self.target.provider!r}"


@dataclass(slots=True)
class _Model:
    deployments: list[_Deployment]
    settings: ModelSettings


class _Failed(Exception):
    """One failed attempt: the client-facing error and whether to retry in place."""

    def __init__(self, error: GatewayError, *, retry: bool, status: int | None,
                 wait_s: float | None = None, provider_failed: bool = True) -> None:
        self.error = error
        self.retry = retry
        self.status = status
        self.wait_s = wait_s
        # False when the provider was never reached (pool exhausted): no breaker failure.
        self.provider_failed = provider_failed


class _Response:
    """What the router needs of an HTTP response (aiohttp or the in-process mock)."""

    def __init__(self, status: int, headers: Mapping[str, str],
                 chunks: Callable[[], AsyncIterator[bytes]], release: Callable[[], None],
                 content: aiohttp.StreamReader | None = None) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.release = release
        self.content = content  # aiohttp's reader of the body, for reading it in one call

    async def read(self, limit: int) -> bytes:
        content = self.content
        if content is not None and content.is_eof() and "Content-Encoding" not in self.headers:
            # The whole body has arrived (a small answer comes with its head) and is not
            # compressed, so the buffer is the body: take it in one call, then the same limit.
            data = content.read_nowait()
            if len(data) > limit:
                raise UpstreamError("provider response is too large")
            return data
        buf = bytearray()
        async for piece in self.chunks():
            buf += piece
            if len(buf) > limit:
                raise UpstreamError("provider response is too large")
        return bytes(buf)

    def stream_reads(self) -> Callable[[], Awaitable[bytes]]:
        """The body piece by piece, b"" at its end, for a ChunkStream: aiohttp's ``readany``,
        which is cancel-safe (the stream relay's timer may cancel a wait; what arrived stays
        in the buffer), or the in-process answer, which never waits."""
        if self.content is not None:
            return self.content.readany
        pieces = self.chunks()

        async def read() -> bytes:
            return await anext(pieces, b"")

        return read


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def check_completion_shape(doc: Any, label: str) -> None:
    """The translated answer is a chat completion the gateway can inspect and relay.

    Every adapter builds it from the provider's JSON; a provider answer with a non-list
    ``choices``, a choice without a message, a text that is not a string or a tool call
    without a string name and arguments is refused here (502) instead of being relayed
    half-read (and unseen by the output check, which reads strings).
    """
    def bad(what: str) -> UpstreamError:
        return UpstreamError(f"{label} sent an answer that could not be read ({what})")

    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices:
        raise bad("no choices")
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise bad("a choice without a message")
        for field in ("content", "refusal"):
            value = message.get(field)
            if value is not None and not isinstance(value, str):
                raise bad(f"a message {field} that is not text")
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, list):
            raise bad("tool calls that are not a list")
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if not (isinstance(fn, dict) and isinstance(fn.get("name"), str)
                    and isinstance(fn.get("arguments"), str)):
                raise bad("a tool call without a name and arguments")


class Router:
    def __init__(
        self,
        providers: Mapping[str, ProviderSettings],
        models: Mapping[str, ModelSettings],
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._secrets = _secrets(providers)
        self._urls: dict[str, URL] = {}
        adapters: dict[str, ChatAdapter] = {}
        states: dict[str, Any] = {}
        for name, ps in providers.items():
            adapter = registry.get(ps.kind)
            try:
                adapter.validate(ps)
            except ValueError as exc:
                raise ValueError(f"providers.{name}: {exc}") from exc
            adapters[name] = adapter
            states[name] = adapter.prepare(ps) if isinstance(adapter, PreparingAdapter) else None
        # One pool per provider entry, shared by every model deployed on it.
        pools = {name: asyncio.Semaphore(ps.max_connections) for name, ps in providers.items()}
        self._models: dict[str, _Model] = {}
        # Called with (provider, model, opened) when a breaker opens or closes (events).
        self.on_breaker_change: Callable[[str, str, bool], None] | None = None
        for mname, ms in models.items():
            deps = []
            for d in ms.deployments():
                if d.provider not in providers:
                    raise ValueError(f"models.{mname}: unknown provider {d.provider!r}")
                ps = providers[d.provider]
                adapter = adapters[d.provider]
                deps.append(_Deployment(
                    Target(d.provider, ps, d.model, mname, states[d.provider]),
                    adapter,
                    CircuitBreaker(ps.breaker_failures, ps.breaker_cooldown_s, clock),
                    aiohttp.ClientTimeout(total=None, sock_connect=ps.connect_timeout_s,
                                          sock_read=ps.idle_timeout_s),
                    d.weight,
                    pools[d.provider],
                    adapter if isinstance(adapter, EmbeddingsAdapter) else None,
                    adapter if isinstance(adapter, InProcessAdapter) else None,
                ))
            if not deps:
                raise ValueError(f"models.{mname}: needs provider+model or fallbacks")
            self._models[mname] = _Model(deps, ms)

    def _breaker_changed(self, dep: _Deployment, m: _Model, *, opened: bool) -> None:
        hook = self.on_breaker_change
        if hook is not None:
            hook(dep.target.provider, dep.target.client_model, opened)

    def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Circuit-breaker state per deployment, read by /metrics at scrape time."""
        return [("circuit_breaker_open", {"provider": d.target.provider, "model": name},
                 1.0 if d.breaker.is_open else 0.0)
                for name, m in self._models.items() for d in m.deployments]

    # -- catalogue -------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return list(self._models)

    def model_info(self, model: str) -> ModelInfo:
        m = self._lookup(model)
        first = m.deployments[0].target
        return ModelInfo(model, first.settings.kind, first.provider, first.model,
                         m.settings.embeddings, m.settings.description)

    def _lookup(self, model: str) -> _Model:
        m = self._models.get(model) if isinstance(model, str) else None
        if m is None:
            raise NotFound(f"model {model!r} does not exist or is not configured",
                           param="model", code="model_not_found")
        return m

    # -- calls -----------------------------------------------------------------------
    async def chat(
        self, body: dict[str, Any], model: str, *, request_id: str,
        trace_headers: Mapping[str, str] | None = None,
    ) -> Completion | ChunkStream:
        """The answer of the first deployment that gives one; raises RouteFailed."""
        try:
            m, include_usage = self._chat_model(body, model)
        except GatewayError as exc:  # refused before any deployment was asked
            raise RouteFailed(exc, [], None) from exc
        return await self._route(m, body, request_id, "chat", include_usage, trace_headers)

    def _chat_model(self, body: dict[str, Any], model: str) -> tuple[_Model, bool]:
        require_messages(body)
        check_tools(body)
        m = self._lookup(model)
        if m.settings.embeddings:
            raise BadRequest(f"model {model!r} serves embeddings only", param="model")
        stream = bool(body.get("stream"))
        opts = body.get("stream_options")
        if opts is not None and not isinstance(opts, dict):
            raise BadRequest("'stream_options' must be an object", param="stream_options")
        include_usage = stream and bool((opts or {}).get("include_usage"))
        return m, include_usage

    async def embeddings(self, body: dict[str, Any], model: str, *, request_id: str,
                         trace_headers: Mapping[str, str] | None = None) -> Completion:
        """The embeddings of the first deployment that answers; raises RouteFailed."""
        try:
            m = self._embeddings_model(body, model)
        except GatewayError as exc:  # refused before any deployment was asked
            raise RouteFailed(exc, [], None) from exc
        result = await self._route(m, body, request_id, "embeddings", False, trace_headers)
        assert isinstance(result, Completion)
        return result

    def _embeddings_model(self, body: dict[str, Any], model: str) -> _Model:
        m = self._lookup(model)
        if not m.settings.embeddings:
            raise BadRequest(f"model {model!r} is not an embeddings model", param="model")
        inp = body.get("input")
        if not (isinstance(inp, str) and inp) and not (isinstance(inp, list) and inp):
            raise BadRequest("'input' must be a non-empty string or array", param="input")
        return m

    def _order(self, m: _Model) -> list[_Deployment]:
        deps = m.deployments
        if m.settings.strategy != "weighted" or len(deps) < 2:
            return deps
        weights = [d.weight for d in deps]
        if not any(weights):
            return deps
        first = self._rng.choices(range(len(deps)), weights=weights)[0]
        return [deps[first]] + [d for i, d in enumerate(deps) if i != first]

    async def _route(self, m: _Model, body: dict[str, Any], request_id: str, op: str,
                     include_usage: bool,
                     trace_headers: Mapping[str, str] | None = None) -> Completion | ChunkStream:
        attempts: list[dict[str, Any]] = []
        last: GatewayError | None = None
        for position, dep in enumerate(self._order(m)):
            t = dep.target
            base = {"provider": t.provider, "kind": t.settings.kind, "model": t.model}
            if not dep.breaker.allow():
                attempts.append({**base, "outcome": "skipped", "error": "circuit_open"})
                continue
            try:
                req = self._build(dep, body, op)
                if trace_headers:  # W3C trace context: the provider's spans join ours
                    req.headers.update(trace_headers)
            except BadRequest as exc:
                if position == 0 or last is None:
                    raise RouteFailed.after(exc, attempts) from exc
                attempts.append({**base, "outcome": "skipped", "error": exc.code})
                continue
            for retry in range(t.settings.max_retries + 1):
                started = time.perf_counter()
                try:
                    result = await self._attempt(dep, req, body, op, include_usage)
                except _Failed as f:
                    if f.provider_failed:
                        was_open = dep.breaker.is_open
                        dep.breaker.failure()
                        if dep.breaker.is_open and not was_open:
                            self._breaker_changed(dep, m, opened=True)
                    else:
                        dep.breaker.abandon()
                    ms = round((time.perf_counter() - started) * 1000, 1)
                    attempts.append({**base, "outcome": "error", "status": f.status,
                                     "error": f.error.code, "retry": retry, "ms": ms})
                    log.warning("request %s: %s failed (%s, %s)", request_id, dep.label(),
                                f.status, f.error.code)
                    last = f.error
                    if isinstance(f.error, BadRequest):
                        raise RouteFailed.after(f.error, attempts) from f.error
                    if not f.retry or retry == t.settings.max_retries:
                        break
                    if f.wait_s is not None and f.wait_s > t.settings.max_retry_wait_s:
                        # The provider asked for a longer pause than we may wait: retrying
                        # now would only be refused again (and count against our quota).
                        break
                    await self._sleep(self._backoff(t.settings, retry, f.wait_s))
                    continue
                if dep.breaker.is_open:
                    dep.breaker.success()
                    self._breaker_changed(dep, m, opened=False)
                else:
                    dep.breaker.success()
                ms = round((time.perf_counter() - started) * 1000, 1)
                attempts.append({**base, "outcome": "ok", "retry": retry, "ms": ms})
                result.served = Served(t.provider, t.settings.kind, t.model, attempts)
                return result
        if last is None:
            last = UpstreamError("every deployment of this model is failing (circuit open)",
                                 code="circuit_open")
        raise RouteFailed.after(last, attempts) from last

    def _backoff(self, ps: ProviderSettings, retry: int, wait_s: float | None) -> float:
        if wait_s is not None and wait_s <= ps.max_retry_wait_s:
            return wait_s
        # Exponential with full jitter (AWS architecture blog), capped by max_retry_wait_s.
        jitter = float(self._rng.random())
        return min(ps.max_retry_wait_s, ps.retry_backoff_s * 2.0**retry) * jitter

    def _build(self, dep: _Deployment, body: dict[str, Any], op: str) -> UpstreamRequest:
        try:
            return self._translate(dep, body, op)
        except GatewayError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
            # A malformed field deep in the request (e.g. a tool without a name) must be a
            # 400, not a 500 from inside a translation function.
            raise BadRequest(f"malformed request for the {dep.target.settings.kind} provider: "
                             f"{type(exc).__name__}", code="invalid_request") from exc

    def _translate(self, dep: _Deployment, body: dict[str, Any], op: str) -> UpstreamRequest:
        if op == "chat":
            return dep.adapter.to_provider(body, dep.target)
        if dep.embeddings is None:
            raise BadRequest(f"the {dep.target.settings.kind} provider has no embeddings API",
                             param="model", code="unsupported_operation")
        return dep.embeddings.embeddings_to_provider(body, dep.target)

    async def _send(self, dep: _Deployment, req: UpstreamRequest) -> _Response:
        if dep.in_process is not None:
            try:
                status, headers, data = dep.in_process.respond(req)
            except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
                raise _Failed(BadRequest("malformed request for the mock provider"),
                              retry=False, status=400) from exc
            return _Response(status, headers, lambda: _one(data), lambda: None)
        release = await self._acquire(dep)
        try:
            async with asyncio.timeout(dep.target.settings.first_byte_timeout_s):
                resp = await self._session.request(
                    req.method, self._url(req.url), data=req.body, headers=req.headers,
                    timeout=dep.timeout, allow_redirects=False,
                )
        except asyncio.TimeoutError as exc:
            release()
            raise _Failed(UpstreamTimeout(f"{dep.label()} did not answer in time"),
                          retry=True, status=None) from exc
        except aiohttp.ClientError as exc:
            release()
            raise _Failed(UpstreamError(f"cannot reach {dep.label()}: {type(exc).__name__}",
                                        code="upstream_unreachable"),
                          retry=True, status=None) from exc
        except BaseException:
            release()
            raise

        def done() -> None:
            resp.release()
            release()

        return _Response(resp.status, resp.headers, resp.content.iter_any, done, resp.content)

    def _url(self, url: str) -> URL:
        """The parsed URL, once per distinct URL: they come from configuration only (a few per
        deployment), never from a request; bounded all the same."""
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = URL(url, encoded=True)
            if len(self._urls) < _MAX_URLS:
                self._urls[url] = parsed
        return parsed

    @staticmethod
    async def _acquire(dep: _Deployment) -> Callable[[], None]:
        """A connection slot of the deployment's provider, or 503 after pool_timeout_s.
        Returns an idempotent release (a stream and an error path may both call it)."""
        ps = dep.target.settings
        try:
            if dep.pool.locked():
                async with asyncio.timeout(ps.pool_timeout_s):
                    await dep.pool.acquire()
            else:
                await dep.pool.acquire()  # a free slot: returns at once, no timer needed
        except asyncio.TimeoutError as exc:
            err = Unavailable(f"all {ps.max_connections} connections to {dep.label()} are busy; "
                              "retry shortly", code="upstream_pool_exhausted")
            raise _Failed(err, retry=False, status=None, provider_failed=False) from exc
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                dep.pool.release()

        return release

    async def _attempt(self, dep: _Deployment, req: UpstreamRequest, body: dict[str, Any],
                       op: str, include_usage: bool) -> Completion | ChunkStream:
        resp = await self._send(dep, req)
        t = dep.target
        try:
            if resp.status >= 300:
                data = await self._read(dep, resp, MAX_ERROR_BYTES, truncate=True)
                err = self._scrub(dep.adapter.error_from_provider(resp.status, resp.headers,
                                                                  data, t))
                retry = provider_errors.retriable_status(resp.status)
                wait = provider_errors.retry_after_s(resp.headers)
                raise _Failed(err, retry=retry, status=resp.status, wait_s=wait)
            if op == "chat" and req.stream:
                cs = ChunkStream(
                    resp.stream_reads(), resp.release, dep.adapter.stream_translator(t),
                    served=Served(t.provider, t.settings.kind, t.model),
                    include_usage=include_usage, prompt_estimate=estimate_prompt_tokens(body),
                    label=dep.label(),
                )
                # Safety net: a stream dropped without aclose() (e.g. the client vanished
                # before the response was prepared) still hands back its pool slot.
                weakref.finalize(cs, resp.release)
                try:
                    async with asyncio.timeout(t.settings.first_byte_timeout_s):
                        await cs.prime()
                except asyncio.TimeoutError as exc:
                    await cs.aclose()
                    raise _Failed(UpstreamTimeout(f"{dep.label()} sent no first chunk in time"),
                                  retry=True, status=resp.status) from exc
                except GatewayError as exc:
                    await cs.aclose()
                    raise _Failed(self._scrub(exc), retry=not isinstance(exc, BadRequest),
                                  status=resp.status) from exc
                return cs
            data = await self._read(dep, resp, MAX_RESPONSE_BYTES)
            try:
                if op == "chat":
                    doc, usage = dep.adapter.from_provider(data, t)
                    check_completion_shape(doc, dep.label())
                    usage = usage or _estimate_chat(body, doc)
                else:
                    assert dep.embeddings is not None  # _translate refused the request
                    doc, usage = dep.embeddings.embeddings_from_provider(data, t)
                    if body.get("encoding_format") == "base64":
                        encode_embeddings_base64(doc)
                    usage = usage or Usage(estimate_tokens(str(body.get("input"))), 0, True)
            except GatewayError as exc:
                raise _Failed(self._scrub(exc), retry=False, status=resp.status) from exc
            except Exception as exc:  # noqa: BLE001 - the provider's bytes, not our request
                # An adapter that trips over a shape it did not expect (a null choice, a
                # number for a text) is reading a malformed answer: the provider's fault, 502.
                log.warning("%s sent an answer its adapter could not read (%s)", dep.label(),
                            type(exc).__name__, exc_info=True)
                raise _Failed(UpstreamError(f"{dep.label()} sent an answer that could not be "
                                            "read"), retry=False, status=resp.status) from exc
            return Completion(doc, usage, Served(t.provider, t.settings.kind, t.model))
        finally:
            if not (op == "chat" and req.stream and resp.status < 300):
                resp.release()

    async def _read(self, dep: _Deployment, resp: _Response, limit: int,
                    truncate: bool = False) -> bytes:
        try:
            return await resp.read(limit)
        except UpstreamError as exc:
            if truncate:
                return b""
            raise _Failed(exc, retry=False, status=resp.status) from exc
        except asyncio.TimeoutError as exc:
            raise _Failed(UpstreamTimeout(f"{dep.label()} went idle mid-response"),
                          retry=True, status=resp.status) from exc
        except aiohttp.ClientError as exc:
            raise _Failed(UpstreamError(f"{dep.label()} broke the connection"),
                          retry=True, status=resp.status) from exc

    def _scrub(self, err: GatewayError) -> GatewayError:
        for secret in self._secrets:
            if secret in err.message:
                err.message = err.message.replace(secret, "***")
                err.args = (err.message,)
        return err


def _secrets(providers: Mapping[str, ProviderSettings]) -> list[str]:
    out = []
    for ps in providers.values():
        for s in (ps.api_key, ps.aws_secret_access_key, ps.aws_session_token):
            if s is not None and len(s.get_secret_value()) >= 4:
                out.append(s.get_secret_value())
    return out


def _estimate_chat(body: dict[str, Any], doc: dict[str, Any]) -> Usage:
    text = ""
    for c in doc.get("choices") or ():
        msg = c.get("message") or {}
        text += content_text(msg.get("content"))
        for call in msg.get("tool_calls") or ():
            text += str((call.get("function") or {}).get("arguments") or "")
    return Usage(estimate_prompt_tokens(body), estimate_tokens(text), estimated=True)


