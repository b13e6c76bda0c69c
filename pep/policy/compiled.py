"""One compiled, immutable policy bundle answering the gateway's decision rule.

Compilation (parse, refuse unsupported constructs, load data, register extensions) happens
once per bundle revision in ``Program``; evaluation only sets the input and evaluates one
rule, ~15 us for a typical decision. A ``regorus.Engine`` is *unsendable* (pyo3): it must be
created, used and dropped on the event-loop thread, so nothing here is handed to a worker
thread.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from pep.policy import projection
from pep.policy.bundle import Bundle
from pep.policy.engine import PolicyError
from pep.policy.output_memo import OutputMemo
from pep.policy.program import (
    EngineFailure,
    Prepared,
    Program,
    clean_error,
    is_panic,
    new_engine,
)

log = logging.getLogger("regogate.policy")

__all__ = ["CompiledPolicy", "EngineFailure", "clean_error", "eval_rule", "is_panic",
           "load_modules", "new_engine", "rule_path"]


def rule_path(decision: str) -> str:
    """OPA REST style ``regogate/decision`` -> ``data.regogate.decision``."""
    path = decision.strip("/").replace("/", ".")
    return path if path.startswith("data.") or path == "data" else f"data.{path}"


def load_modules(engine: Any, modules: dict[str, str], data: dict[str, Any]) -> None:
    """Add modules and data to a raw engine (tooling); a parse error names file and line."""
    for name, src in modules.items():
        try:
            engine.add_policy(name, src)
        except Exception as exc:  # regorus raises RuntimeError with a located message
            raise PolicyError(f"{name}: {clean_error(exc)}", "policy_invalid") from exc
    if data:
        engine.add_data_json(orjson.dumps(data).decode())


def eval_rule(engine: Any, path: str) -> tuple[bool, Any]:
    """(defined, value) of one rule on a raw engine (tooling and tests; not the hot path).
    An unknown rule path is undefined, as in OPA's data API."""
    try:
        out = engine.eval_rule_as_json(path)
    except Exception as exc:
        if "not a valid rule path" in str(exc):
            return False, None
        raise
    if out == '"<undefined>"':
        value = engine.eval_rule(path)
        return value is not None, value
    return True, orjson.loads(out)


class CompiledPolicy:
    """A compiled bundle answering one decision rule."""

    __slots__ = ("output_memo", "program", "revision", "rule")

    def __init__(self, bundle: Bundle, decision: str, prepared: Prepared | None = None) -> None:
        self.rule = rule_path(decision)
        self.revision = bundle.revision
        self.program = Program(bundle.modules, bundle.data, prepared)
        problem = self._problem(bundle)
        if problem is not None:
            # Drop the engines before raising: the traceback keeps this frame (and so this
            # object) alive, and thread-bound engines must be freed here, on this thread.
            del self.program
            raise problem
        self.output_memo = self._output_memo(bundle)

    def _output_memo(self, bundle: Bundle) -> OutputMemo | None:
        """The output-phase memo, if the analysis proves it sound for this bundle (logged
        once per revision either way)."""
        try:
            found = projection.analyse(self.program.ast_entries(), bundle.data, self.rule)
        except projection.Refused as exc:
            log.info("output decision memo off for revision %s: %s", self.revision, exc)
            return None
        except Exception:  # an AST the analysis does not expect: no memo, load goes on
            log.exception("output decision memo off for revision %s", self.revision)
            return None
        log.info("output decision memo on for revision %s, keyed on input %s", self.revision,
                 ", ".join(".".join(p) for p in projection.paths(found)))
        return OutputMemo(found)

    def _problem(self, bundle: Bundle) -> PolicyError | None:
        # A missing decision rule is a broken bundle, found now rather than per request.
        if not any(p == self.rule or p.startswith(self.rule + ".") for p in
                   self.program.rule_paths):
            return PolicyError(
                f"policy bundle {bundle.root} does not define {self.rule}", "policy_invalid"
            )
        try:
            self._check_config(bundle)
        except PolicyError as exc:
            return PolicyError(str(exc), exc.code)
        return None

    def _check_config(self, bundle: Bundle) -> None:
        """Refuse a bundle whose data the policy itself finds broken.

        ``config_errors`` beside the decision rule (a set of messages that depends only on
        data, e.g. a quota limit with a typo) is evaluated once per bundle revision here
        rather than on every request; non-empty fails start-up, and a hot reload keeps the
        previous policy. Bundles without the rule are not checked."""
        path = self.rule.rsplit(".", 1)[0] + ".config_errors"
        if path not in self.program.rule_paths:
            return
        _, errors = self.program.evaluate(path, "{}")
        if errors:
            listed = "; ".join(sorted(str(e) for e in errors)) if isinstance(errors, list) else str(errors)
            raise PolicyError(
                f"policy bundle {bundle.root}: {path} is not empty: {listed}", "policy_invalid"
            )

    def evaluate_json(self, input_json: str) -> Any:
        """Raw decision value for an input already serialised as JSON; None if undefined.
        Raises PolicyError (EngineFailure for a panic); never leaves the engine broken."""
        defined, value = self.program.evaluate(self.rule, input_json)
        return value if defined else None

    def probe(self) -> str | None:
        """None if a fresh engine evaluates the decision rule (on an empty input) without
        failing; else why not. An input-dependent policy error is not an engine problem."""
        try:
            self.program.evaluate(self.rule, "{}", fresh=True)
        except EngineFailure as exc:
            return str(exc)
        except PolicyError:
            return None
        return None

    def evaluate(self, policy_input: dict[str, Any]) -> Any:
        return self.evaluate_json(orjson.dumps(policy_input).decode())
