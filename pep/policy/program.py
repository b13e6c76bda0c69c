"""A bundle's modules and data compiled for the embedded engine, as the gateway runs them.

``Program`` is the one place that turns Rego source into something regorus evaluates:

1. ``support.check_modules`` refuses, at load, every construct the embedded engine would
   decide differently from OPA (naming construct, file and line);
2. builtins called in relation form ``f(x, out)`` are rewritten to ``out = f(x)``;
3. modules are compiled once into a *template* engine that is never evaluated; the live
   engine is a clone of it (a clone costs under a microsecond);
4. every evaluation runs on the live engine. If it raises, the live engine is discarded and
   re-cloned from the template (so an engine left broken -- a Rust panic leaves regorus
   answering "recursion detected" forever -- never serves a second request), and the one
   request is re-evaluated on the non-strict copy (``nonstrict``): OPA's semantics for
   builtin errors. A panic is never retried: it fails that request closed (``EngineFailure``).

Thread-bound: regorus engines are ``unsendable``; create and use a Program on one thread.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import orjson
import regorus

from pep.policy import builtins, nonstrict, support
from pep.policy.engine import PolicyError

log = logging.getLogger("regogate.policy")

# OPA has no line-length limit; regorus' default (1,024 columns) refuses generated
# allow-lists and long regexes that OPA accepts.
_MAX_COL = 1 << 20
_MAX_FILE_BYTES = 64 << 20
_MAX_LINES = 1 << 20


# eval_rule_as_json renders both "undefined" and the string "<undefined>" this way.
_UNDEFINED_JSON = '"<undefined>"'


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # beyond 64-bit integers or orjson's depth: stay exact
        return json.loads(text)


class EngineFailure(PolicyError):
    """The engine itself failed (a Rust panic): not the policy's fault, not the input's."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "engine_failure")


def clean_error(exc: BaseException) -> str:
    """regorus messages may carry a Rust backtrace; keep the part a human needs."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip()
    return text or type(exc).__name__


def is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def no_rust_backtraces() -> None:
    """Stop regorus capturing a Rust backtrace in every error it raises.

    With ``RUST_BACKTRACE=1`` in the environment (common on developer machines and some
    images), each regorus error captured and symbolised a backtrace: the first one loaded the
    library's symbol tables, about 60 MB of RSS kept for the life of the process (the
    support check's arity probe raises one at every start-up), and each later one cost
    milliseconds of CPU. ``clean_error`` drops the backtrace anyway. ``RUST_LIB_BACKTRACE``
    governs only library backtraces (panics still honour ``RUST_BACKTRACE``); an operator who
    sets it explicitly keeps their choice. Rust reads it at the first capture, so this runs
    before any engine is used."""
    os.environ.setdefault("RUST_LIB_BACKTRACE", "0")


def new_engine() -> Any:
    no_rust_backtraces()
    engine = regorus.Engine()
    engine.set_policy_length_config(
        max_col=_MAX_COL, max_file_bytes=_MAX_FILE_BYTES, max_lines=_MAX_LINES
    )
    builtins.register(engine)
    return engine


def _add_modules(engine: Any, modules: dict[str, str]) -> None:
    for name, src in modules.items():
        try:
            engine.add_policy(name, src)
        except Exception as exc:  # regorus raises RuntimeError with a located message
            raise PolicyError(f"{name}: {clean_error(exc)}", "policy_invalid") from exc


@dataclass(frozen=True)
class Prepared:
    """The source-level work of loading (AST analysis, refusals, rewrites). It creates
    and drops its own temporary engines; it runs on the loop thread like the compile (in
    a worker thread, its allocations let the cyclic GC run there and meet engines of the
    loop thread, which pyo3 refuses to free)."""

    sources: dict[str, str]  # what the fast engine runs
    safe_sources: dict[str, str] | None  # the non-strict copy (None: could not be built)
    wrapped: frozenset[tuple[str, int]]
    rule_paths: frozenset[str]


def _parse(sources: dict[str, str]) -> dict[str, dict[str, Any]] | PolicyError:
    """ASTs of ``sources`` from a temporary engine, or the parse error *returned*: a raised
    error's traceback would keep the thread-bound engine alive past this thread."""
    engine = new_engine()
    try:
        _add_modules(engine, sources)
        return nonstrict.ast_modules(engine)
    except PolicyError as exc:
        return PolicyError(str(exc), exc.code)
    finally:
        del engine


# regorus' parser rejects a number literal beyond float64's range (`1e400`), which OPA
# accepts (it keeps the literal's exact decimal text): the support checker's refusal.
_NUMBER_OUT_OF_RANGE = "cannot parse number: out of range"


def _located(message: str) -> str:
    """``file:line:col`` of a regorus parse error (its ``--> file:line:col`` line)."""
    at = message.find("--> ")
    return message[at + 4:].split()[0] if at >= 0 else message.splitlines()[0]


def prepare(modules: dict[str, str]) -> Prepared:
    """Refuse (PolicyError policy_refused) or rewrite a bundle's modules."""
    asts = _parse(modules)
    if isinstance(asts, PolicyError):
        if _NUMBER_OUT_OF_RANGE in str(asts):
            raise PolicyError(
                "policy uses what the embedded engine cannot run exactly as OPA: "
                f"{_located(str(asts))}: " + support.REFUSED_CONSTRUCTS["number_range"],
                "policy_refused",
            )
        raise asts
    analysis = support.analyse(modules, asts)
    if analysis.refusals:
        raise PolicyError(
            "policy uses what the embedded engine cannot run exactly as OPA: "
            + "; ".join(analysis.refusals),
            "policy_refused",
        )
    # Relation-form calls rewritten, then arithmetic routed to exact decimals.
    if analysis.sources != modules:
        asts = _parse(analysis.sources)
        if isinstance(asts, PolicyError):
            raise asts
    sources = {
        name: nonstrict.rewrite_arith(src, asts[name]) if name in asts else src
        for name, src in analysis.sources.items()
    }
    safe_sources: dict[str, str] | None = {}
    wrapped: set[tuple[str, int]] = set()
    final = _parse(sources)
    try:
        if isinstance(final, PolicyError):
            raise final
        is_builtin = support.builtin_predicate(sources, final)
        for name, src in sources.items():
            safe, used = nonstrict.rewrite(src, final[name], is_builtin)
            safe_sources[name] = safe  # type: ignore[index]
            wrapped |= used
    except Exception:  # a rewrite bug must not break loading: errors stay errors
        log.exception("non-strict copy of the policy could not be prepared")
        safe_sources = None
    return Prepared(sources, safe_sources, frozenset(wrapped), analysis.rule_paths)


class Program:
    """Compiled modules + data; ``evaluate`` answers one path for one input."""

    __slots__ = ("_data", "_engine", "_safe", "_template", "rule_paths",
                 "failures", "fallbacks", "last_fallback_error")

    def __init__(
        self, modules: dict[str, str], data: dict[str, Any], prepared: Prepared | None = None
    ) -> None:
        prep = prepared if prepared is not None else prepare(modules)
        self.rule_paths = prep.rule_paths
        self._data = orjson.dumps(data).decode() if data else ""
        template = self._build(prep.sources)
        if isinstance(template, PolicyError):
            raise template
        self._template = template
        self._engine = self._template.clone()
        # Built now, on the loading thread, so a request that needs it pays no compile.
        self._safe: Any = self._build_safe(prep)
        self.failures = 0  # panics: requests failed closed and engine rebuilt
        self.fallbacks = 0  # evaluations answered by the non-strict copy
        self.last_fallback_error = ""  # the builtin error that sent the last one there

    def ast_entries(self) -> list[dict[str, Any]]:
        """regorus' AST of the modules the strict engine runs (``get_ast_as_json``)."""
        entries: list[dict[str, Any]] = orjson.loads(self._template.get_ast_as_json())
        return entries

    def _build(self, sources: dict[str, str]) -> Any:
        """A compiled engine, or the error *returned* (see ``_parse``)."""
        engine = new_engine()
        try:
            _add_modules(engine, sources)
            if self._data:
                engine.add_data_json(self._data)
        except PolicyError as exc:
            return PolicyError(str(exc), exc.code)
        except Exception as exc:  # noqa: BLE001 - e.g. data regorus cannot load
            return PolicyError(f"policy data: {clean_error(exc)}", "policy_invalid")
        return engine

    def _build_safe(self, prep: Prepared) -> Any:
        if prep.safe_sources is None:
            return None
        try:
            engine = new_engine()
            nonstrict.SafeBuiltins().register(engine, set(prep.wrapped))
            _add_modules(engine, prep.safe_sources)
            if self._data:
                engine.add_data_json(self._data)
        except Exception:  # a rewrite bug must not break loading: errors stay errors
            log.exception("non-strict copy of the policy could not be built")
            return None
        return engine

    def _run(self, engine: Any, path: str, input_json: str | None) -> tuple[bool, Any]:
        if input_json is not None:
            try:
                engine.set_input_json(input_json)
            except RuntimeError:
                # serde_json stops at 128 levels; OPA has no such limit.
                engine.set_input(_loads(input_json))
        if path in self.rule_paths:
            out = engine.eval_rule_as_json(path)
            if out != _UNDEFINED_JSON:
                return True, _loads(out)
            # Ambiguous: undefined, or a rule whose value is that very string.
        rows = _loads(engine.eval_query_as_json(path)).get("result")
        return (True, rows[0]["expressions"][0]["value"]) if rows else (False, None)

    def evaluate(
        self, path: str, input_json: str | None, *, fresh: bool = False
    ) -> tuple[bool, Any]:
        """(defined, JSON value of ``path``: sets as arrays). Raises PolicyError
        (EngineFailure for a panic); never leaves the live engine broken. ``fresh`` runs on
        a new clone of the template (readiness probes), leaving the live engine alone.

        Errors are re-raised *outside* the ``except`` blocks and without a cause: a kept
        traceback would hold the engine clone, which is thread-bound, and let the garbage
        collector drop it on another thread."""
        failure = self._attempt(self._template.clone() if fresh else self._engine, path,
                                input_json)
        if isinstance(failure, tuple):
            return failure
        self._engine = self._template.clone()
        if failure.startswith("panic:"):
            self.failures += 1
            raise EngineFailure(f"policy engine failure: {failure[6:]}")
        self.fallbacks += 1
        self.last_fallback_error = failure
        if self._safe is None:
            raise PolicyError(f"policy evaluation failed: {failure}", "policy_invalid")
        second = self._attempt(self._safe.clone(), path, input_json)
        if isinstance(second, tuple):
            return second
        if second.startswith("panic:"):
            self.failures += 1
            raise EngineFailure(f"policy engine failure: {second[6:]}")
        raise PolicyError(f"policy evaluation failed: {second}", "policy_invalid")

    def _attempt(self, engine: Any, path: str, input_json: str | None) -> tuple[bool, Any] | str:
        """The result, or the error message ("panic:..." for a Rust panic)."""
        try:
            return self._run(engine, path, input_json)
        except Exception as exc:  # noqa: BLE001 - every engine error is contained
            return clean_error(exc)
        except BaseException as exc:
            if not is_panic(exc):
                raise
            return "panic:" + clean_error(exc)
