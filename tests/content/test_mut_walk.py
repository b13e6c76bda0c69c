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


def test_a_text_part_whose_other_fields_change_keeps_its_text() -> None:
    # Only the cache hint is replaced: the part is rebuilt from its other fields, and its text,
    # which the visitor left as it was, is kept (not dropped, not None).
    part = {"type": "text", "text": "t0", "cache_control": {"type": "ephemeral"}}
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": [part]}]}
    out = walk(body, "chat.completions",
               lambda _site, text: "E" if text == "ephemeral" else None)
    assert out["messages"][0]["content"] == [
        {"type": "text", "cache_control": {"type": "E"}, "text": "t0"}]
    assert part["cache_control"] == {"type": "ephemeral"}


def test_json_text_in_a_field_other_than_arguments_is_one_plain_string() -> None:
    # Only "arguments" holds JSON by contract; elsewhere JSON-looking text is a string like any
    # other: visited whole at its own location, and a replacement replaces all of it.
    note = '{"k": "bob@example.org"}'
    body: dict[str, Any] = {"model": "m", "metadata": {"note": note},
                            "messages": [{"role": "user", "content": "hi",
                                          "extra": {"note": note}}]}
    seen: list[tuple[str, str]] = []

    def visit(site: Site, text: str) -> str | None:
        seen.append((site.location, text))
        return "X" if text == note else None

    out = walk(body, "chat.completions", visit)
    assert [s for s in seen if s[1] != "hi"] == [
        ("messages[0].extra.note", note), ("metadata[key:0]", "note"), ("metadata.note", note)]
    assert out["metadata"] == {"note": "X"}
    assert out["messages"][0]["extra"] == {"note": "X"}


def test_keys_of_a_nested_or_message_level_metadata_object_are_client_data() -> None:
    # "metadata" below the top level (inside another field, or on a message) is free-form
    # client data as the top-level one is: its keys are visited, and can be replaced.
    body: dict[str, Any] = {"model": "m", "extra": {"metadata": {"bob@example.org": "v"}},
                            "messages": [{"role": "user", "content": "hi",
                                          "metadata": {"ann@example.org": "w"}}]}
    seen: list[tuple[Site, str]] = []

    def visit(site: Site, text: str) -> str | None:
        seen.append((site, text))
        return "[EMAIL]" if "@" in text else None

    out = walk(body, "chat.completions", visit)
    assert (Site("extra.metadata[key:0]", -1, False), "bob@example.org") in seen
    assert (Site("messages[0].metadata[key:0]", 0, False), "ann@example.org") in seen
    assert out["extra"] == {"metadata": {"[EMAIL]": "v"}}
    assert out["messages"][0]["metadata"] == {"[EMAIL]": "w"}
    # Other objects' keys are the wire format's, not visited.
    assert not any("[key:" in s.location for s, _ in seen if "metadata" not in s.location)


def test_arguments_that_are_one_plain_string_and_not_replaced_are_kept() -> None:
    for arguments in ("mail bob", "17", "{not json"):
        body: dict[str, Any] = {"model": "m", "messages": [
            {"role": "assistant", "tool_calls": [
                {"type": "function", "function": {"name": "f", "arguments": arguments}}]}]}
        assert walk(body, "chat.completions", lambda _site, _text: None) is body
