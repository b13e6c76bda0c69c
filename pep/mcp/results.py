"""What the gateway looks at in MCP results: list items by name, and every string of a
result (tool content, structured content, resource text, prompt messages) for the output
decision and its redact obligation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (method) -> (result key holding the items, McpInput field the item fills, item key)
LISTS: dict[str, tuple[str, str, str]] = {
    "tools/list": ("tools", "tool", "name"),
    "resources/list": ("resources", "resource_uri", "uri"),
    "resources/templates/list": ("resourceTemplates", "resource_uri", "uriTemplate"),
    "prompts/list": ("prompts", "prompt", "name"),
}
# Results whose content reaches the client (and the model behind it): the output decision.
CHECKED = frozenset({"tools/call", "resources/read", "prompts/get"})

# Every string is checked (a key named "type" inside structured content is still content),
# except base64 media: a resource's "blob" and the "data" of image and audio content.
_MEDIA = frozenset({"image", "audio"})


def _binary(doc: dict[str, Any], key: str) -> bool:
    return key == "blob" or (key == "data" and doc.get("type") in _MEDIA)


def strings(value: Any, out: list[str]) -> list[str]:
    """Every content string in ``value``, in document order."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            strings(item, out)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not _binary(value, key):
                strings(item, out)
    return out


def rewrite(value: Any, fn: Callable[[str], str]) -> Any:
    """``value`` with ``fn`` applied to the same strings ``strings`` visits."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [rewrite(item, fn) for item in value]
    if isinstance(value, dict):
        return {k: (v if _binary(value, k) else rewrite(v, fn)) for k, v in value.items()}
    return value
