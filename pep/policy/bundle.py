"""A policy bundle on disk: Rego modules, tests and data documents, plus its revision.

Layout follows OPA's bundle convention so the same directory can be mounted into an OPA
sidecar unchanged:

- every ``*.rego`` file is a module; ``*_test.rego`` files are tests (used by
  ``regogate policy test``, never served);
- ``data.json`` / ``data.yaml`` / ``data.yml`` anywhere; a file at ``x/y/data.json`` is
  mounted at ``data.x.y``;
- hidden files and directories (``.git``, editor swap files) are ignored.

The revision is ``sha256:<hex>`` over the sorted relative paths and contents of everything
that is *served* (modules and data, not tests), so an audit record's policy revision
identifies exactly the policy text that decided it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATA_FILES = frozenset({"data.json", "data.yaml", "data.yml"})


class BundleError(Exception):
    """The bundle directory cannot be read or its data files are invalid."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    modules: dict[str, str]  # relative path -> Rego source (served)
    tests: dict[str, str]  # relative path -> Rego source (*_test.rego)
    data: dict[str, Any]
    revision: str
    files: tuple[str, ...] = field(default=())


def _relevant(name: str) -> bool:
    return name.endswith(".rego") or name in DATA_FILES


def scan(root: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap fingerprint of the bundle (path, mtime_ns, size) for hot-reload polling."""
    out: list[tuple[str, int, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not _relevant(name):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:  # deleted between walk and stat; next poll sees the result
                continue
            out.append((path, st.st_mtime_ns, st.st_size))
    out.sort()
    return tuple(out)


def _parse_data(rel: str, raw: bytes) -> Any:
    try:
        if rel.endswith(".json"):
            return json.loads(raw)
        return yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise BundleError(f"{rel}: invalid data file: {exc}") from exc


def _mount(data: dict[str, Any], prefix: list[str], doc: Any, rel: str) -> None:
    """Merge ``doc`` at ``data.<prefix>``; overlapping leaves are an error, as in OPA."""
    if not prefix:
        if not isinstance(doc, dict):
            raise BundleError(f"{rel}: a root data file must hold an object")
        _merge(data, doc, rel, "data")
        return
    node = data
    for key in prefix[:-1]:
        nxt = node.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise BundleError(f"{rel}: data path {'.'.join(prefix)} conflicts with another file")
        node = nxt
    last = prefix[-1]
    if last in node:
        if not (isinstance(node[last], dict) and isinstance(doc, dict)):
            raise BundleError(f"{rel}: data path {'.'.join(prefix)} conflicts with another file")
        _merge(node[last], doc, rel, "data." + ".".join(prefix))
    else:
        node[last] = doc


def _merge(dst: dict[str, Any], src: dict[str, Any], rel: str, where: str) -> None:
    for key, value in src.items():
        if key in dst:
            if isinstance(dst[key], dict) and isinstance(value, dict):
                _merge(dst[key], value, rel, f"{where}.{key}")
                continue
            raise BundleError(f"{rel}: {where}.{key} is defined by more than one data file")
        dst[key] = value


def load(root: Path) -> Bundle:
    """Read the whole bundle. Raises BundleError; never returns a partial bundle."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"policy bundle {root} is not a directory")
    modules: dict[str, str] = {}
    tests: dict[str, str] = {}
    data: dict[str, Any] = {}
    digest = hashlib.sha256()
    files: list[str] = []
    for path, _mtime, _size in scan(root):
        rel = Path(path).relative_to(root).as_posix()
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise BundleError(f"{rel}: cannot read: {exc.strerror}") from exc
        files.append(rel)
        name = rel.rsplit("/", 1)[-1]
        if name.endswith("_test.rego"):
            tests[rel] = raw.decode("utf-8", errors="replace")
            continue
        # Length-prefixed so that moving bytes between name and content changes the hash.
        digest.update(f"{len(rel)}:{rel}:{len(raw)}:".encode())
        digest.update(raw)
        if name.endswith(".rego"):
            try:
                modules[rel] = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BundleError(f"{rel}: not UTF-8") from exc
        else:
            doc = _parse_data(rel, raw)
            if doc is None:
                continue
            prefix = [p for p in rel.split("/")[:-1]]
            _mount(data, prefix, doc, rel)
    if not modules:
        raise BundleError(f"policy bundle {root} contains no .rego modules")
    return Bundle(
        root=root,
        modules=modules,
        tests=tests,
        data=data,
        revision="sha256:" + digest.hexdigest(),
        files=tuple(files),
    )
