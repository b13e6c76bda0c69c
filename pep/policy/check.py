"""``regogate policy check``: compile the bundle and refuse what the embedded engine would
get wrong.

Checks (errors make the command fail):
- every module and test parses; data files load; the decision rule exists;
- nothing the embedded engine would decide differently from OPA: ``pep.policy.support``
  (the list bundle load applies and docs/policies.md shows) -- missing builtins, builtins
  refused on purpose (network, runtime introspection), constructs regorus gets wrong --
  each reported with file and line, in modules and tests alike;
- every ``# METADATA`` block is a YAML mapping, as OPA requires (pep.policy.annotations).
Warnings: a module without a ``_test.rego`` beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pep.policy import bundle as bundle_mod
from pep.policy import nonstrict, support
from pep.policy.annotations import metadata_errors
from pep.policy.compiled import CompiledPolicy, load_modules, new_engine
from pep.policy.engine import PolicyError


@dataclass
class CheckReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    revision: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


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
    # One refusal list for modules and tests (support.py, the same as bundle load).
    sources = {**loaded.modules, **loaded.tests}
    refusals = support.analyse(sources, nonstrict.ast_modules(engine)).refusals
    report.errors.extend(refusals)
    if not refusals:
        try:
            CompiledPolicy(loaded, decision)
        except PolicyError as exc:
            report.errors.append(str(exc))
    for rel in loaded.modules:
        if not rel.endswith(".rego"):
            continue
        test = rel[: -len(".rego")] + "_test.rego"
        if test not in loaded.tests:
            report.warnings.append(f"{rel}: no {Path(test).name} beside it")
    return report
