"""``pep.content.walk`` edges found by mutation testing (scripts/mutate.py content)."""

from __future__ import annotations

from typing import Any

from pep.content.walk import Site, walk


def test_arguments_that_are_not_a_json_object_or_list_are_one_plain_string() -> None:
    # Not JSON, or a JSON scalar: visited whole, at the arguments' own location, as a string
    # of message 1 that is not its text; a replacement replaces the whole string.
    for arguments in ("mail bob@example.org", '"bob@example.org"', "17"):
        body: dict[str, Any] = {"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": arguments}}]}]}
        seen: list[tuple[Site, str]] = []

        def visit(site: Site, text: str) -> str | None:
            seen.append((site, text))
            return "X" if text == arguments else None

        out = walk(body, "chat.completions", visit)
        assert (Site("messages[1].tool_calls[0].function.arguments", 1, False),
                arguments) in seen
        assert out["messages"][1]["tool_calls"][0]["function"]["arguments"] == "X"
        assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == arguments


def test_keys_after_a_structural_key_are_still_visited() -> None:
    body: dict[str, Any] = {"model": "m", "metadata": {"type": "t", "bob@example.org": "v"}}
    seen: list[str] = []

    def visit(site: Site, text: str) -> None:
        seen.append(site.location)

    walk(body, "chat.completions", visit)
    assert [loc for loc in seen if "[key:" in loc] == ["metadata[key:1]"]
