"""One compiled, immutable policy bundle on the embedded engine (regorus).

Compilation (parse every module, load data, register extensions) happens once per bundle
revision; evaluation only sets the input and evaluates one rule, ~15 us for a typical
decision. A ``regorus.Engine`` is *unsendable* (pyo3): it must be created, used and dropped
on the event-loop thread, so nothing here is handed to a worker thread.
"""

from __future__ import annotations

from typing import Any

import orjson
import regorus

from pep.policy import builtins
from pep.policy.bundle import Bundle
from pep.policy.engine import PolicyError

# eval_rule_as_json renders both "undefined" and the string "<undefined>" this way.
_UNDEFINED_JSON = '"<undefined>"'


def clean_error(exc: BaseException) -> str:
    """regorus messages may carry a Rust backtrace; keep the part a human needs."""
    text = str(exc).split("Stack backtrace:", 1)[0].strip()
    return text or type(exc).__name__


def rule_path(decision: str) -> str:
    """OPA REST style ``regogate/decision`` -> ``data.regogate.decision``."""
    path = decision.strip("/").replace("/", ".")
    return path if path.startswith("data.") or path == "data" else f"data.{path}"


def new_engine() -> Any:
    engine = regorus.Engine()
    builtins.register(engine)
    return engine


def load_modules(engine: Any, modules: dict[str, str], data: dict[str, Any]) -> None:
    """Add modules and data; a parse error raises PolicyError naming file and line."""
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
    if out == _UNDEFINED_JSON:
        value = engine.eval_rule(path)
        return value is not None, value
    return True, orjson.loads(out)


class CompiledPolicy:
    """A compiled bundle answering one decision rule."""

    __slots__ = ("_engine", "revision", "rule")

    def __init__(self, bundle: Bundle, decision: str) -> None:
        self.rule = rule_path(decision)
        self.revision = bundle.revision
        self._engine = new_engine()
        load_modules(self._engine, bundle.modules, bundle.data)
        # A missing decision rule is a broken bundle, found now rather than per request.
        self._engine.set_input_json("{}")
        try:
            self._engine.eval_rule_as_json(self.rule)
        except Exception as exc:
            msg = clean_error(exc)
            if "not a valid rule path" in msg:
                raise PolicyError(
                    f"policy bundle {bundle.root} does not define {self.rule}", "policy_invalid"
                ) from exc
            # Other errors depend on the input (e.g. a conflict only some inputs trigger).
        self._check_config(bundle)

    def _check_config(self, bundle: Bundle) -> None:
        """Refuse a bundle whose data the policy itself finds broken.

        ``config_errors`` beside the decision rule (a set of messages that depends only on
        data, e.g. a quota limit with a typo) is evaluated once per bundle revision here
        rather than on every request; non-empty fails start-up, and a hot reload keeps the
        previous policy. Bundles without the rule are not checked."""
        path = self.rule.rsplit(".", 1)[0] + ".config_errors"
        try:
            defined, errors = eval_rule(self._engine, path)
        except Exception as exc:
            raise PolicyError(f"{path}: {clean_error(exc)}", "policy_invalid") from exc
        if defined and errors:
            listed = "; ".join(sorted(str(e) for e in errors)) if isinstance(errors, list) else str(errors)
            raise PolicyError(
                f"policy bundle {bundle.root}: {path} is not empty: {listed}", "policy_invalid"
            )

    def evaluate_json(self, input_json: str) -> Any:
        """Raw decision value for an input already serialised as JSON; None if undefined."""
        engine = self._engine
        try:
            engine.set_input_json(input_json)
            out = engine.eval_rule_as_json(self.rule)
            if out == _UNDEFINED_JSON:
                # Ambiguous: undefined, or a rule whose value is that very string.
                return engine.eval_rule(self.rule)
        except Exception as exc:
            # Conflicts ("rule conflicts with ..."), division by zero (OPA: undefined; here an
            # error -- documented), extension errors: the policy is broken for this input.
            raise PolicyError(
                f"policy evaluation failed: {clean_error(exc)}", "policy_invalid"
            ) from exc
        return orjson.loads(out)

    def evaluate(self, policy_input: dict[str, Any]) -> Any:
        return self.evaluate_json(orjson.dumps(policy_input).decode())
