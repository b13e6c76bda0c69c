"""``regogate policy check``: compile the bundle and refuse what the embedded engine would
get wrong.

Checks (errors make the command fail):
- every module and test parses; data files load; the decision rule exists;
- every function call resolves to a policy function, an extension (pep.policy.builtins) or
  a builtin regorus has -- found by scanning the AST and probing each builtin name once, so
  a policy never passes on OPA and fails only at run time on the embedded engine (regorus
  reports a missing builtin only when the calling rule is evaluated);
- builtins refused on purpose (network, runtime introspection: ``builtins.REFUSED``);
- every ``# METADATA`` block is a YAML mapping, as OPA requires (pep.policy.annotations).
Warnings: a module without a ``_test.rego`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pep.policy import builtins
from pep.policy import bundle as bundle_mod
from pep.policy.annotations import metadata_errors
from pep.policy.compiled import CompiledPolicy, clean_error, load_modules, new_engine
from pep.policy.engine import PolicyError
from pep.policy.rego_ast import ModuleInfo, module_info


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    revision: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


class BuiltinProbe:
    """Asks regorus itself whether it knows a builtin (cached per name and arity)."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], bool] = {}

    def has(self, name: str, nargs: int) -> bool:
        key = (name, nargs)
        if key not in self._known:
            engine = new_engine()
            args = ", ".join(["null"] * nargs)
            try:
                engine.add_policy("probe.rego", f"package regogate_probe\nx := {name}({args})\n")
                engine.eval_rule_as_json("data.regogate_probe.x")
                known = True
            except RuntimeError as exc:  # a type error on null args still proves it exists
                known = "could not find function" not in clean_error(exc)
            self._known[key] = known
        return self._known[key]


def _defined_functions(infos: list[ModuleInfo]) -> set[str]:
    return {f"data.{m.package}.{r.name}" for m in infos for r in m.rules if r.kind == "Func"}


def _resolve(name: str, info: ModuleInfo, functions: set[str]) -> bool:
    head, _, rest = name.partition(".")
    candidates = [f"data.{info.package}.{name}"]
    if name.startswith("data."):
        candidates.append(name)
    if head in info.imports and rest:
        candidates.append(f"{info.imports[head]}.{rest}")
    return any(c in functions for c in candidates)


def check(root: Path, decision: str = "regogate/decision") -> CheckReport:
    report = CheckReport()
    try:
        loaded = bundle_mod.load(root)
    except bundle_mod.BundleError as exc:
        report.errors.append(str(exc))
        return report
    report.revision = loaded.revision
    for rel, src in {**loaded.modules, **loaded.tests}.items():
        report.errors.extend(metadata_errors(rel, src))
    engine = new_engine()
    try:
        load_modules(engine, {**loaded.modules, **loaded.tests}, loaded.data)
    except PolicyError as exc:
        report.errors.append(str(exc))
        return report
    try:
        CompiledPolicy(loaded, decision)
    except PolicyError as exc:
        report.errors.append(str(exc))
    infos = [module_info(e) for e in orjson.loads(engine.get_ast_as_json())]
    functions = _defined_functions(infos)
    probe = BuiltinProbe()
    for info in infos:
        for call in info.calls:
            where = f"{info.file}:{call.line}"
            if call.name in builtins.REFUSED:
                report.errors.append(
                    f"{where}: {call.name} is refused: {builtins.REFUSED[call.name]}"
                )
            elif _resolve(call.name, info, functions) or call.name in builtins.EXTENSIONS:
                continue
            elif not probe.has(call.name, 1):
                report.errors.append(
                    f"{where}: function {call.name} is not available on the embedded engine "
                    "(not a policy function, not a regorus builtin)"
                )
    for rel in loaded.modules:
        if not rel.endswith(".rego"):
            continue
        test = rel[: -len(".rego")] + "_test.rego"
        if test not in loaded.tests:
            report.warnings.append(f"{rel}: no {Path(test).name} beside it")
    return report
