"""The embedded policy engine: regorus in-process, compiled once, hot-reloaded atomically.

Hot reload polls the bundle's file mtimes (one ``os.walk`` + ``stat`` per interval, in a worker
thread); on a change it reads the bundle, compiles a *fresh* engine on the loop thread and
swaps one reference. A request always sees one whole compiled bundle. On a compile error the
old policy keeps serving; the error is logged, counted and shown in ``ready()``.

Engine failures are contained per request (GUIDE.md 3.15): a Rust panic inside regorus (a
``BaseException``) or any other error fails that one request closed and the live engine is
re-cloned from the compiled bundle before the next one (``Program``); panics are counted in
``engine_failures`` (``regogate_policy_engine_failures_total``). ``ready()`` probes a fresh
engine on an empty input and is false after ``FAILURE_STREAK_NOT_READY`` consecutive engine
failures with no successful decision in between (a bundle that cannot evaluate at all); one
panicking request does not take the replica out of rotation.

Output decisions (``input.output`` set) are answered from the compiled bundle's output memo
when its load-time analysis proved which input paths they depend on
(pep.policy.output_memo, pep.policy.projection); everything else is evaluated every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import orjson

from pep.policy import bundle as bundle_mod
from pep.policy.compiled import CompiledPolicy, EngineFailure
from pep.policy.contract import Decision
from pep.policy.engine import PolicyError
from pep.policy.output_memo import OutputMemo
from pep.policy.validated import DecisionMemo, stamp

log = logging.getLogger("regogate.policy")

# One panicking input must not take a replica out of rotation (that would let any client
# do it); a run of failures with no successful decision in between means it cannot decide.
FAILURE_STREAK_NOT_READY = 3


class EmbeddedEngine:
    name = "embedded"

    def __init__(
        self,
        bundle: Path,
        decision: str = "regogate/decision",
        *,
        hot_reload: bool = True,
        reload_interval_s: float = 1.0,
    ) -> None:
        self._root = Path(bundle)
        self._decision = decision
        self._hot_reload = hot_reload
        self._interval = reload_interval_s
        self._policy: CompiledPolicy | None = None
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0
        self.reload_errors = 0
        self.last_reload_error: str | None = None
        self.engine_failures = 0
        # Consecutive engine failures with no successful decision in between: the engine
        # cannot evaluate what it is being asked (see ready()).
        self._failure_streak = 0
        self._last_failure: str | None = None
        # Validated decision documents (regorus' JSON, so JSON-native values only).
        self._decisions = DecisionMemo()

    @property
    def revision(self) -> str:
        return self._policy.revision if self._policy else "none"

    def _compile(self) -> CompiledPolicy:
        try:
            loaded = bundle_mod.load(self._root)
        except bundle_mod.BundleError as exc:
            raise PolicyError(str(exc), "policy_invalid") from exc
        return CompiledPolicy(loaded, self._decision)

    async def start(self) -> None:
        """Compile the bundle; a broken bundle at start is fatal (raises PolicyError)."""
        self._fingerprint = bundle_mod.scan(self._root)
        self._policy = self._compile()
        log.info("policy loaded: %s revision %s", self._root, self._policy.revision)
        if self._hot_reload and self._task is None:
            self._task = asyncio.create_task(self._watch(), name="policy-hot-reload")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # regorus engines are thread-bound ("unsendable"): release ours here, on the event
        # loop's thread, rather than whenever the cyclic GC happens to run on some other one.
        self._policy = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.reload_if_changed()
            except Exception:  # the watcher must never die; the old policy keeps serving
                log.exception("policy hot-reload poll failed")

    async def reload_if_changed(self) -> bool:
        """One poll: returns True when a new revision was swapped in."""
        fingerprint = await asyncio.to_thread(bundle_mod.scan, self._root)
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            loaded = await asyncio.to_thread(bundle_mod.load, self._root)
            if self._policy is not None and loaded.revision == self._policy.revision:
                return False  # touched, or only tests changed
            # regorus engines are thread-bound: analyse and compile here, on the loop thread
            # (about 45 ms of CPU for the shipped library, once per edit).
            fresh = CompiledPolicy(loaded, self._decision)
        except (bundle_mod.BundleError, PolicyError) as exc:
            self.reload_errors += 1
            self.last_reload_error = str(exc)
            log.error("policy reload failed, still serving %s: %s", self.revision, str(exc))
            return False
        old = self.revision
        self._policy = fresh
        self._failure_streak = 0
        self.reloads += 1
        self.last_reload_error = None
        log.info("policy reloaded: revision %s -> %s", old, fresh.revision)
        return True

    def evaluate_raw(self, input_json: str) -> Any:
        raw, revision = self._evaluate(input_json)
        return raw

    def _evaluate(self, input_json: str) -> tuple[Any, str]:
        """(raw decision, revision). An error is raised from here with its traceback cut:
        the frames below hold the compiled policy, whose regorus engines are thread-bound,
        and an exception kept in a reference cycle would let the garbage collector free
        them on whatever thread it runs (an audit writer's), which pyo3 refuses."""
        policy = self._policy
        if policy is None:
            raise PolicyError("policy engine not started", "policy_unavailable")
        revision = policy.revision
        error: PolicyError | None = None
        raw: Any = None
        try:
            raw = policy.evaluate_json(input_json)
        except PolicyError as exc:
            error = exc.with_traceback(None)
        del policy
        if error is None:
            self._failure_streak = 0
            return raw, revision
        if isinstance(error, EngineFailure):
            self.engine_failures += 1
            self._failure_streak += 1
            self._last_failure = str(error)
            log.error("policy engine failure contained; engine rebuilt from revision %s",
                      revision)
        raise error

    async def evaluate(self, policy_input: dict[str, Any]) -> Decision:
        policy = self._policy
        memo = policy.output_memo if policy is not None else None
        if policy is not None and memo is not None:
            key = memo.key(policy_input)
            if key is not None:
                return self._decide_memoised(policy, memo, key, policy_input)
        return self.decide(orjson.dumps(policy_input).decode(), policy_input)

    def _decide_memoised(self, policy: CompiledPolicy, memo: OutputMemo,
                         key: tuple[bytes, ...], policy_input: dict[str, Any]) -> Decision:
        """The output phase through its memo (pep.policy.output_memo): a hit skips the
        input's serialisation, regorus and validation; a miss is stored only when the
        strict engine answered it with a document that validated."""
        request = policy_input.get("request")
        request_id = request.get("id") if isinstance(request, dict) else None
        revision = policy.revision
        base = memo.get(key)
        if base is None:
            fallbacks = policy.program.fallbacks
            raw, revision = self._evaluate(orjson.dumps(policy_input).decode())
            base = self._decisions.base(raw)  # raises if invalid: never stored
            if base is None:
                return self._decisions.parse(raw, revision=revision, decision_id=request_id)
            if policy.program.fallbacks == fallbacks:
                memo.put(key, base)
        else:
            self._failure_streak = 0  # a successful decision, as an evaluation would be
        return stamp(base, revision=revision, decision_id=request_id)

    def decide(self, input_json: str, policy_input: dict[str, Any]) -> Decision:
        """Synchronous core of ``evaluate`` (shadow mode reuses the serialised input)."""
        raw, revision = self._evaluate(input_json)
        request = policy_input.get("request")
        request_id = request.get("id") if isinstance(request, dict) else None
        # One request = one decision id (GUIDE.md section 1): the request id.
        return self._decisions.parse(raw, revision=revision, decision_id=request_id)

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        detail: dict[str, Any] = {
            "engine": self.name,
            "revision": self.revision,
            "reloads": self.reloads,
            "reload_errors": self.reload_errors,
            "engine_failures": self.engine_failures,
        }
        if self.last_reload_error:
            detail["last_reload_error"] = self.last_reload_error
        policy = self._policy
        if policy is None:
            return False, detail
        problem = policy.probe()
        if problem is None and self._failure_streak >= FAILURE_STREAK_NOT_READY:
            problem = f"{self._failure_streak} consecutive engine failures: {self._last_failure}"
        if problem:
            detail["engine_error"] = problem
        return problem is None, detail
