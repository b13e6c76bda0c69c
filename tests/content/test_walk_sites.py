"""``pep.content.walk``: exactly which strings of a canonical request are visited, where they
are said to be, and what a replacement changes (inspection, stripping and redaction all use
this one walker, so a string it misses is missed by all three)."""

from __future__ import annotations

from typing import Any

from pep.content.walk import Site, walk


def rich_body() -> dict[str, Any]:
    return {"model": "m", "user": "u1", "stop": ["s1"],
     "metadata": {"mk": "mv"},
     "messages": [
      {"role": "system", "content": "sys"},
      {"role": "user", "name": "nm", "content": [
         {"type": "text", "text": "t0", "cache_control": {"type": "ephemeral"}},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
         {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}},
         {"type": "input_audio", "input_audio": {"data": "QUJD", "format": "wav"}}]},
      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "f", "arguments": "{\"ak\": \"av\", \"n\": [\"l0\"]}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "tr"}],
     "tools": [{"type": "function", "function": {"name": "f", "description": "d",
        "parameters": {"type": "object", "properties": {"pk": {"type": "string", "description": "pd"}}}}}]}


def visited(body: dict[str, Any], api: str) -> list[tuple[str, int, bool, str]]:
    seen: list[tuple[str, int, bool, str]] = []

    def visit(site: Site, text: str) -> None:
        seen.append((site.location, site.message_index, site.content, text))

    assert walk(body, api, visit) is body  # nothing replaced: the very same body
    return seen


def test_every_client_string_of_a_chat_request_is_visited_with_its_location() -> None:
    # Not visited: the model, roles, a data: image URL and audio data (binary payloads).
    assert visited(rich_body(), "chat.completions") == [
        ('messages[0].content', 0, True, 'sys'),
        ('messages[1].name', 1, False, 'nm'),
        ('messages[1].content[0].text', 1, True, 't0'),
        ('messages[1].content[0].type', 1, False, 'text'),
        ('messages[1].content[0].cache_control.type', 1, False, 'ephemeral'),
        ('messages[1].content[1].type', 1, False, 'image_url'),
        ('messages[1].content[2].type', 1, False, 'image_url'),
        ('messages[1].content[2].image_url.url', 1, False, 'https://x/y.png'),
        ('messages[1].content[2].image_url.detail', 1, False, 'low'),
        ('messages[1].content[3].type', 1, False, 'input_audio'),
        ('messages[1].content[3].input_audio.format', 1, False, 'wav'),
        ('messages[2].tool_calls[0].id', 2, False, 'c1'),
        ('messages[2].tool_calls[0].type', 2, False, 'function'),
        ('messages[2].tool_calls[0].function.name', 2, False, 'f'),
        ('messages[2].tool_calls[0].function.arguments[key:0]', 2, False, 'ak'),
        ('messages[2].tool_calls[0].function.arguments[key:1]', 2, False, 'n'),
        ('messages[2].tool_calls[0].function.arguments.ak', 2, False, 'av'),
        ('messages[2].tool_calls[0].function.arguments.n[0]', 2, False, 'l0'),
        ('messages[3].tool_call_id', 3, False, 'c1'),
        ('messages[3].content', 3, True, 'tr'),
        ('user', -1, False, 'u1'),
        ('stop[0]', -1, False, 's1'),
        ('metadata[key:0]', -1, False, 'mk'),
        ('metadata.mk', -1, False, 'mv'),
        ('tools[0].type', -1, False, 'function'),
        ('tools[0].function.name', -1, False, 'f'),
        ('tools[0].function.description', -1, False, 'd'),
        ('tools[0].function.parameters.type', -1, False, 'object'),
        ('tools[0].function.parameters.properties[key:0]', -1, False, 'pk'),
        ('tools[0].function.parameters.properties.pk.type', -1, False, 'string'),
        ('tools[0].function.parameters.properties.pk.description', -1, False, 'pd'),
    ]


def test_embeddings_input_strings_are_message_text_indexed_by_position() -> None:
    assert visited({"model": "m", "input": "e0", "user": "u"}, "embeddings") == [
        ("input", 0, True, "e0"), ("user", -1, False, "u")]
    assert visited({"model": "m", "input": ["e0", 3, "e2"]}, "embeddings") == [
        ("input[0]", 0, True, "e0"), ("input[2]", 2, True, "e2")]
    assert visited({"model": "m", "input": 5}, "embeddings") == []


CHANGED = frozenset({"t0", "ak", "av", "l0", "tr", "mk", "mv", "pk", "pd", "e0"})


def shout(site: Site, text: str) -> str | None:
    return text.upper() if text in CHANGED else None


def test_replacements_land_where_the_strings_were_and_unchanged_parts_are_kept() -> None:
    body = rich_body()
    out = walk(body, "chat.completions", shout)
    assert out is not body and body == rich_body()  # the client's body is not modified
    user = out["messages"][1]["content"]
    assert user[0] == {"type": "text", "text": "T0", "cache_control": {"type": "ephemeral"}}
    assert user[1] is body["messages"][1]["content"][1]  # nothing visited in it changed
    call = out["messages"][2]["tool_calls"][0]["function"]
    assert call["arguments"] == '{"AK":"AV","n":["L0"]}'  # still JSON, keys and values
    assert user[2] is body["messages"][1]["content"][2]
    assert out["messages"][3]["content"] == "TR"
    assert out["metadata"] == {"MK": "MV"}
    props = out["tools"][0]["function"]["parameters"]["properties"]
    assert props == {"PK": {"type": "string", "description": "PD"}}
    assert out["messages"][0] is body["messages"][0]


def test_embeddings_replacements_keep_the_input_shape() -> None:
    body: dict[str, Any] = {"model": "m", "input": ["e0", 3, "x2"]}
    out = walk(body, "embeddings", shout)
    assert out == {"model": "m", "input": ["E0", 3, "x2"]} and body["input"] == ["e0", 3, "x2"]
    assert walk({"model": "m", "input": "e0"}, "embeddings", shout) == {"model": "m", "input": "E0"}
    same: dict[str, Any] = {"model": "m", "input": ["x"]}
    assert walk(same, "embeddings", shout) is same
