"""The one walker over a canonical request: every client-controlled string that is forwarded.

Inspection (findings), invisible-character stripping and the redact obligation all go through
``walk``, so a field is either covered by all three or by none, and a request shape added
later (another API normalised to the canonical form) is covered by construction: the walker
visits *every* string leaf of the canonical body, not a list of known fields. Only these are
left out, because they are not text a model reads or because the gateway chose them:

* the top-level ``model`` (validated against configuration) and message ``role`` (an enum);
* binary payloads: ``image_url.url`` when it is a ``data:`` URL, ``input_audio.data``,
  ``file.file_data`` (base64 media; scanning them is cost without findings).

JSON-string-valued fields (``function.arguments``, Anthropic ``tool_use.input`` after
translation) are parsed and their string values visited one by one, so a redaction keeps them
valid JSON; a value that does not parse is visited as one plain string.

Locations are paths into the canonical body, e.g. ``messages[2].tool_calls[0].function.arguments``
(with ``.key``/``[i]`` appended for a value inside a JSON string) or ``tools[0].function.description``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import orjson


class Site(NamedTuple):
    """Where a string sits. ``message_index`` is the message it belongs to (-1: none);
    ``content`` is True for message text (the parts joined into request.messages[i].text)."""

    location: str
    message_index: int
    content: bool


# (site, text) -> replacement text, or None to leave the string as it is.
Visit = Callable[[Site, str], "str | None"]

_JSON_STRING_KEYS = frozenset({"arguments"})
# Where object keys are client data too: JSON-string values, metadata, tool and response
# schemas (property names). Keys that are the wire format's or JSON Schema's own vocabulary
# are skipped (they are not the client's text, and a tool schema has many of them).
_KEYED_TOP = frozenset({"metadata", "tools", "response_format", "functions"})
_STRUCTURAL_KEYS = frozenset({
    "type", "function", "name", "description", "parameters", "strict", "properties", "items",
    "required", "enum", "const", "title", "default", "examples", "format", "pattern",
    "additionalProperties", "anyOf", "oneOf", "allOf", "not", "$ref", "$defs", "definitions",
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "nullable",
    "json_schema", "schema", "input_schema", "cache_control",
})
_BINARY = {"image_url": "url", "input_audio": "data", "file": "file_data"}
# Walked by their own rules above; every other top-level key is walked generically, so a
# field an API adds later (a Responses-style "input" or "instructions") is visited too.
_OWN_RULES = {"embeddings": frozenset({"model", "input"})}
_OWN_RULES_CHAT = frozenset({"model", "messages"})


def walk(body: dict[str, Any], api: str, visit: Visit) -> dict[str, Any]:
    """Visit every forwarded client string of a canonical request body; returns the body with
    the replacements applied (the same object, and the same sub-objects, where nothing changed)."""
    out: dict[str, Any] | None = None
    if api == "embeddings":
        new = _embedding_input(body.get("input"), visit)
        if new is not body.get("input"):
            out = {**body, "input": new}
    else:
        messages = body.get("messages")
        if isinstance(messages, list):
            new_msgs = _list(messages, "messages", visit, _message)
            if new_msgs is not messages:
                out = {**body, "messages": new_msgs}
    own = _OWN_RULES.get(api, _OWN_RULES_CHAT)
    for key, value in body.items():
        if key in own:
            continue
        new_value = _value(value, key, Site(key, -1, False), visit, key in _KEYED_TOP)
        if new_value is not value:
            out = {**(out or body), key: new_value}
    return body if out is None else out


def _embedding_input(raw: Any, visit: Visit) -> Any:
    if isinstance(raw, str):
        new = visit(Site("input", 0, True), raw)
        return raw if new is None else new
    if not isinstance(raw, list):
        return raw
    changed: list[Any] | None = None
    for i, item in enumerate(raw):
        if isinstance(item, str):
            new = visit(Site(f"input[{i}]", i, True), item)
            if new is not None and new != item:
                changed = changed or list(raw)
                changed[i] = new
    return raw if changed is None else changed


def _list(items: list[Any], path: str, visit: Visit,
          each: Callable[[Any, str, int, Visit], Any]) -> list[Any]:
    changed: list[Any] | None = None
    for i, item in enumerate(items):
        new = each(item, f"{path}[{i}]", i, visit)
        if new is not item:
            changed = changed or list(items)
            changed[i] = new
    return items if changed is None else changed


def _message(msg: Any, path: str, index: int, visit: Visit) -> Any:
    if not isinstance(msg, dict):
        return msg
    out: dict[str, Any] | None = None
    for key, value in msg.items():
        if key == "role":
            continue
        if key == "content":
            new = _content(value, f"{path}.content", index, visit)
        else:
            new = _value(value, f"{path}.{key}", Site(f"{path}.{key}", index, False), visit,
                         key == "metadata")
        if new is not value:
            out = {**(out or msg), key: new}
    return msg if out is None else out


def _content(content: Any, path: str, index: int, visit: Visit) -> Any:
    if isinstance(content, str):
        new = visit(Site(path, index, True), content)
        return content if new is None else new
    if not isinstance(content, list):
        return content
    changed: list[Any] | None = None
    for j, part in enumerate(content):
        at = f"{path}[{j}]"
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            # Text parts are message text; their other fields (type, cache hints) are not.
            new_text = visit(Site(f"{at}.text", index, True), part["text"])
            rest = {k: v for k, v in part.items() if k != "text"}
            new_rest = _value(rest, at, Site(at, index, False), visit)
            new_part = part
            if (new_text is not None and new_text != part["text"]) or new_rest is not rest:
                new_part = {**new_rest, "text": part["text"] if new_text is None else new_text}
        else:
            new_part = _value(part, at, Site(at, index, False), visit)
        if new_part is not part:
            changed = changed or list(content)
            changed[j] = new_part
    return content if changed is None else changed


def _value(value: Any, path: str, site: Site, visit: Visit, keys: bool = False) -> Any:
    """Any JSON value under ``path``: strings visited, containers walked. ``keys``: object
    keys are free-form client data here (inside a JSON-string field, ``metadata``), so they
    are visited too, located as ``path[key:i]`` (the i-th key; the key text itself is not
    put in the location, where it could carry what it hides)."""
    if isinstance(value, str):
        new = visit(Site(path, site.message_index, False), value)
        return value if new is None else new
    if isinstance(value, list):
        return _list(value, path, visit,
                     lambda v, p, _i, vis: _value(v, p, site, vis, keys))
    if not isinstance(value, dict):
        return value
    if keys:
        value = _visit_keys(value, path, site, visit)
    out: dict[str, Any] | None = None
    for key, item in value.items():
        at = f"{path}.{key}"
        if isinstance(item, str) and _is_binary(path, key, item):
            continue
        if key in _JSON_STRING_KEYS and isinstance(item, str):
            new = _json_string(item, at, site, visit)
        else:
            new = _value(item, at, site, visit, keys or key == "metadata")
        if new is not item:
            out = {**(out or value), key: new}
    return value if out is None else out


def _visit_keys(value: dict[str, Any], path: str, site: Site, visit: Visit) -> dict[str, Any]:
    renamed: dict[str, str] = {}
    for i, key in enumerate(value):
        if key in _STRUCTURAL_KEYS:
            continue
        new = visit(Site(f"{path}[key:{i}]", site.message_index, False), key)
        if new is not None and new != key:
            renamed[key] = new
    if not renamed:
        return value
    return {renamed.get(k, k): v for k, v in value.items()}


def _is_binary(path: str, key: str, text: str) -> bool:
    parent = path.rsplit(".", 1)[-1]
    if _BINARY.get(parent) != key:
        return False
    return key != "url" or text.startswith("data:")


def _json_string(text: str, path: str, site: Site, visit: Visit) -> str:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, (dict, list)):
        new = visit(Site(path, site.message_index, False), text)
        return text if new is None else new
    new_parsed = _value(parsed, path, site, visit, keys=True)
    if new_parsed is parsed:
        return text
    return orjson.dumps(new_parsed).decode()
