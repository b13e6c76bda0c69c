"""JSON Schema of the decision contract, generated from the pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from pep.policy.contract import Decision, PolicyInput

SCHEMAS: dict[str, type[Any]] = {
    "policy-input.v1.schema.json": PolicyInput,
    "decision.v1.schema.json": Decision,
}


def render() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, model in SCHEMAS.items():
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **model.model_json_schema(),
        }
        out[name] = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    return out


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, body in render().items():
        path = directory / name
        path.write_bytes(body)
        written.append(path)
    return written
