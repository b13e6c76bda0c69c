"""``# METADATA`` blocks parsed as OPA parses them, so ``regogate policy check`` refuses what
``opa check`` / ``opa run`` would refuse (the embedded engine ignores annotations, OPA does
not: an invalid block makes the whole bundle fail to load on the sidecar).

OPA's rule: a comment block (consecutive ``#`` lines) whose first line is ``# METADATA``;
the text of the following lines, with the ``#`` and one space removed, must be a YAML
mapping. ``tests/policy/test_annotations.py`` checks this against OPA's own parser.
"""

from __future__ import annotations

import yaml


def _blocks(src: str) -> list[tuple[int, list[str]]]:
    """(line number of ``# METADATA``, the YAML lines after it) for each block."""
    out: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    for number, line in enumerate(src.splitlines(), start=1):
        stripped = line.lstrip()
        if current is not None and stripped.startswith("#"):
            text = stripped[1:]
            current.append(text[1:] if text.startswith(" ") else text)
            continue
        current = None
        if stripped.startswith("#") and stripped[1:].strip() == "METADATA":
            current = []
            out.append((number, current))
    return out


def metadata_errors(file: str, src: str) -> list[str]:
    errors: list[str] = []
    for line, body in _blocks(src):
        where = f"{file}:{line}"
        text = "\n".join(body)
        if not text.strip():
            errors.append(f"{where}: METADATA block is empty")
            continue
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            errors.append(f"{where}: METADATA block is not valid YAML ({problem})")
            continue
        if not isinstance(doc, dict):
            errors.append(f"{where}: METADATA block must be a YAML mapping")
    return errors
