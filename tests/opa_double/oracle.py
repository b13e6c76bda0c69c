"""Real OPA semantics for the test suite: OPA's Go ``rego`` package through
``opa-golib-python-bindings`` (module ``opa_bindings``), a test oracle, not a production engine.

What it is: OPA v1.20 compiled as a Go shared library behind ctypes. Evaluation always runs in
OPA's *strict builtin errors* mode (a builtin error is an error, where ``opa run`` makes the
expression undefined); there is no evaluation timeout and no test runner, so ``_test.rego``
rules are evaluated one by one here, as ``opa test`` does (a test passes when its rule is
``true``).

Installed by ``scripts/dev.py test`` (its metadata asks for Python 3.14; the wheel needs only
glibc 2.34, so it is installed with ``--ignore-requires-python``). ``available()`` says whether
it is importable; the suite fails instead of skipping when REGOGATE_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

DATA_FILES = frozenset({"data.json", "data.yaml", "data.yml"})
# A module that calls rego.metadata.rule() makes OPA parse every module's METADATA blocks
# (as `opa check` always does); without it the Go rego package skips them.
_ANNOTATION_PROBE = ("__regogate_annotation_probe__.rego",
                     "package __regogate_annotation_probe__\n_m := rego.metadata.rule()\n")


class OracleError(Exception):
    """OPA refused the bundle or failed the evaluation; ``code`` is the bridge's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def available() -> bool:
    try:
        import opa_bindings  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def version() -> str:
    try:
        return f"opa-golib-python-bindings {metadata.version('opa-golib-python-bindings')}"
    except metadata.PackageNotFoundError:
        return "opa-golib-python-bindings"


@dataclass
class OpaBundle:
    """A bundle as OPA's loader reads it: every ``.rego`` (tests included), data documents
    mounted at their directory, the ``.manifest`` and ``.signatures.json`` when present."""

    name: str
    modules: dict[str, str]
    data: list[tuple[list[str], Any]]
    manifest: dict[str, Any] = field(default_factory=dict)
    signatures: dict[str, Any] | None = None
    raw_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def revision(self) -> str:
        return str(self.manifest.get("revision") or "")


def _parse_data(rel: str, raw: bytes) -> Any:
    if rel.endswith(".json"):
        return json.loads(raw)
    return yaml.safe_load(raw)


def _from_files(name: str, files: dict[str, bytes]) -> OpaBundle:
    bundle = OpaBundle(name=name, modules={}, data=[], raw_files=files)
    for rel, raw in sorted(files.items()):
        base = rel.rsplit("/", 1)[-1]
        if rel == ".manifest":
            bundle.manifest = json.loads(raw)
        elif rel == ".signatures.json":
            bundle.signatures = json.loads(raw)
        elif base.endswith(".rego"):
            bundle.modules[rel] = raw.decode("utf-8")
        elif base in DATA_FILES:
            doc = _parse_data(rel, raw)
            if doc is not None:
                bundle.data.append((rel.split("/")[:-1], doc))
    return bundle


def load_bundle(path: Path) -> OpaBundle:
    """A directory (``opa run --bundle dir``) or a ``.tar.gz`` (``opa build`` output)."""
    path = Path(path)
    files: dict[str, bytes] = {}
    if path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fname in filenames:
                rel = Path(dirpath, fname).relative_to(path).as_posix()
                if fname in (".manifest", ".signatures.json") or not fname.startswith("."):
                    files[rel] = Path(dirpath, fname).read_bytes()
    else:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(path.read_bytes()))) as tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name.lstrip("/")] = handle.read()
    return _from_files(str(path), files)


class Oracle:
    """One OPA engine over one bundle. Thread-safe (the bridge serialises evaluations)."""

    def __init__(
        self, modules: dict[str, str], data: Iterable[tuple[list[str], Any]] = ()
    ) -> None:
        from opa_bindings import OpaEngine

        self._engine = OpaEngine()
        self._engine.print_handler = lambda message, location: None
        try:
            for name, src in modules.items():
                self._engine.add_policy(name, src)
            for prefix, doc in data:
                self._engine.add_data(doc, path=".".join(prefix))
            # Compile now, so a bad bundle is refused at load time as OPA does.
            self._engine.eval_query("true")
        except Exception as exc:
            self.close()
            raise _convert(exc) from exc

    @classmethod
    def for_bundle(cls, bundle: OpaBundle) -> Oracle:
        return cls(bundle.modules, bundle.data)

    def evaluate(self, path: str, policy_input: Any = None) -> tuple[bool, Any]:
        """(defined, value) of ``data.<path>`` (dots or slashes); OracleError on error."""
        from opa_bindings import OpaUndefinedError

        doc = path.strip("/").replace("/", ".").removeprefix("data").lstrip(".")
        try:
            return True, self._engine.eval_document(doc, policy_input)
        except OpaUndefinedError:
            return False, None
        except Exception as exc:
            raise _convert(exc) from exc

    def query(self, query: str, policy_input: Any = None) -> list[dict[str, Any]]:
        try:
            return list(self._engine.eval_query(query, policy_input))
        except Exception as exc:
            raise _convert(exc) from exc

    def close(self) -> None:
        self._engine.close()


def _convert(exc: BaseException) -> OracleError:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if code is None:
        return OracleError("internal", str(exc))
    return OracleError(str(code), str(message))


def annotation_errors(modules: dict[str, str]) -> list[str]:
    """OPA's own verdict on every ``# METADATA`` block (as ``opa check`` parses them)."""
    try:
        Oracle({**modules, _ANNOTATION_PROBE[0]: _ANNOTATION_PROBE[1]}).close()
    except OracleError as exc:
        return [exc.message]
    return []


_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.M)
_TEST_RULE = re.compile(r"^(todo_test_\w*|test_\w*)\b", re.M)


def test_rules(modules: dict[str, str]) -> list[tuple[str, str, str]]:
    """(file, package, rule) of every ``test_*`` / ``todo_test_*`` rule, as ``opa test``
    discovers them (by name, in ``*_test.rego`` files), each once."""
    out: list[tuple[str, str, str]] = []
    for file, src in sorted(modules.items()):
        if not file.endswith("_test.rego"):
            continue
        pkg = _PACKAGE.search(src)
        if pkg is None:
            continue
        seen: set[str] = set()
        for name in _TEST_RULE.findall(src):
            if name not in seen:
                seen.add(name)
                out.append((file, pkg.group(1), name))
    return out


def run_tests(oracle: Oracle, modules: dict[str, str]) -> dict[str, str]:
    """``data.<pkg>.<rule>`` -> PASS | FAIL | ERROR | SKIPPED, as ``opa test`` reports."""
    results: dict[str, str] = {}
    for _file, pkg, name in test_rules(modules):
        rule = f"data.{pkg}.{name}"
        if name.startswith("todo_"):
            results[rule] = "SKIPPED"
            continue
        try:
            defined, value = oracle.evaluate(rule)
        except OracleError:
            results[rule] = "ERROR"
            continue
        results[rule] = "PASS" if defined and value is True else "FAIL"
    return results
