"""The request walker, confusable folding, encoded runs and incremental output scanning."""

from __future__ import annotations

import base64
import json
from typing import Any

from pep.content import ContentInspector, ContentSettings
from pep.content.walk import Site, walk


def sites(body: dict[str, Any], api: str = "chat.completions") -> dict[str, str]:
    seen: dict[str, str] = {}

    def visit(site: Site, text: str) -> None:
        seen[site.location] = text

    walk(body, api, visit)
    return seen


def test_walker_visits_every_client_string_and_skips_model_role_and_media() -> None:
    body = {
        "model": "m", "user": "u", "stop": ["s"], "metadata": {"k": "v"},
        "messages": [
            {"role": "user", "name": "n", "content": [
                {"type": "text", "text": "t"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function",
                 "function": {"name": "f", "arguments": '{"a": ["x", {"b": "y"}]}'}}]},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "description": "d"}}],
    }
    seen = sites(body)
    assert seen == {
        "messages[0].name": "n",
        "messages[0].content[0].text": "t",
        "messages[0].content[0].type": "text",
        "messages[0].content[1].type": "image_url",
        "messages[0].content[2].type": "image_url",
        "messages[0].content[2].image_url.url": "https://example.com/a.png",
        "messages[1].tool_calls[0].id": "c",
        "messages[1].tool_calls[0].type": "function",
        "messages[1].tool_calls[0].function.name": "f",
        "messages[1].tool_calls[0].function.arguments[key:0]": "a",
        "messages[1].tool_calls[0].function.arguments.a[0]": "x",
        "messages[1].tool_calls[0].function.arguments.a[1][key:0]": "b",
        "messages[1].tool_calls[0].function.arguments.a[1].b": "y",
        "tools[0].type": "function",
        "tools[0].function.name": "f",
        "tools[0].function.description": "d",
        "user": "u",
        "stop[0]": "s",
        "metadata[key:0]": "k",
        "metadata.k": "v",
    }


def test_walker_returns_the_same_objects_when_nothing_changes() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["x"]}
    assert walk(body, "chat.completions", lambda s, t: None) is body


def test_walker_covers_embeddings_inputs() -> None:
    assert sites({"model": "e", "input": ["a", [1, 2], "b"]}, "embeddings") == {
        "input[0]": "a", "input[2]": "b"}
    assert sites({"model": "e", "input": "a"}, "embeddings") == {"input": "a"}


def test_redacted_tool_arguments_stay_valid_json(inspector: ContentInspector) -> None:
    body: dict[str, Any] = {"messages": [{"role": "assistant", "tool_calls": [{"function": {
        "name": "f", "arguments": json.dumps({"to": "a\"b@example.com", "n": 1})}}]}]}
    out, count = inspector.redact_request(body, "chat.completions", {"email"})
    args = out["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert count == 1 and json.loads(args) == {"to": 'a"[REDACTED:EMAIL]', "n": 1}
    assert body["messages"][0]["tool_calls"][0]["function"]["arguments"] != args  # not mutated


def test_object_keys_in_tool_arguments_are_inspected_and_redacted(
    inspector: ContentInspector,
) -> None:
    args = json.dumps({"ann@example.com": "owner", "n": 1})
    body: dict[str, Any] = {"messages": [{"role": "assistant", "tool_calls": [{"function": {
        "name": "f", "arguments": args}}]}]}
    scan = inspector.scan_request(body, "chat.completions", 1)
    assert [(f.type, f.location) for f in scan.findings] == [
        ("email", "messages[0].tool_calls[0].function.arguments[key:0]")]
    out, _ = inspector.redact_request(body, "chat.completions", {"email"})
    new = out["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(new) == {"[REDACTED:EMAIL]": "owner", "n": 1}


def test_tool_schema_property_names_are_inspected_but_schema_keywords_are_not() -> None:
    body = {"model": "m", "messages": [], "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"ann@example.com": {
            "type": "string"}}}}}]}
    keys = {loc: text for loc, text in sites(body).items() if "[key:" in loc}
    assert keys == {"tools[0].function.parameters.properties[key:0]": "ann@example.com"}


def test_confusables_are_folded_for_detection_but_not_forwarded(
    inspector: ContentInspector,
) -> None:
    text = "Привет, key \u0455k-proj-Tz7cQ1vXk2LmN8pR4sW6yB0dF3gH5jK9"
    assert [f.type for f in inspector.inspect([text])] == ["api_key"]
    masked, count = inspector.redact(text, {"api_key"})
    assert (masked, count) == ("Привет, key [REDACTED:API_KEY]", 1)  # Cyrillic prose kept


def test_base64_and_hex_runs_are_decoded_one_level(inspector: ContentInspector) -> None:
    secret = b"AKIAIOSFODNN7EXAMPLQ"
    once = base64.b64encode(secret).decode()
    twice = base64.b64encode(once.encode()).decode()
    assert [f.detector for f in inspector.inspect([f"x {once} y"])] == [
        "builtin:base64:aws_access_key"]
    assert [f.detector for f in inspector.inspect([secret.hex()])] == ["builtin:hex:aws_access_key"]
    assert inspector.inspect([twice]) == []  # one level only: bounded cost


def test_encoded_runs_are_bounded_per_string() -> None:
    inspector = ContentInspector(ContentSettings(decode_max_runs=2))
    run = base64.b64encode(b"mail me at ann@example.com").decode()
    findings = inspector.inspect([" ".join([run] * 5)])
    assert len(findings) == 2


def test_binary_base64_is_not_scanned(inspector: ContentInspector) -> None:
    blob = base64.b64encode(bytes(range(256))).decode()
    assert inspector.inspect([blob]) == []


def test_incremental_output_findings_match_a_full_scan(inspector: ContentInspector) -> None:
    text = ("Mail ann@example.com. " * 40 + "key AKIAIOSFODNN7EXAMPLE and 4111 1111 1111 1111 "
            + "filler text " * 200 + "end bob@example.org")
    full = [(f.type, f.start, f.end) for f in inspector.inspect([inspector.normalise(text)])]
    for size in (1, 7, 64, 1500):
        out = inspector.output_scanner(check_every_chars=0)
        for i in range(0, len(text), size):
            out.feed(text[i:i + size])
            if i % (size * 3) == 0:
                out.findings()
        assert [(f.type, f.start, f.end) for f in out.findings()] == full, size


class CountingInspector(ContentInspector):
    """A real inspector that records how much text each scan was given."""

    scanned: list[int]

    def inspect(self, texts: list[str]) -> list[Any]:
        self.scanned.append(sum(map(len, texts)))
        return super().inspect(texts)


def test_output_scanning_cost_stays_flat_with_answer_length() -> None:
    inspector = CountingInspector(ContentSettings())
    inspector.scanned = []
    out = inspector.output_scanner(check_every_chars=0)
    for _ in range(200):
        out.feed("word " * 40)  # 200 characters per check
        out.findings()
    # Each check scans the new text plus a bounded overlap, never the whole answer.
    assert max(inspector.scanned) <= 200 + 1024
    assert len(out.text) == 200 * 200


def test_fields_of_apis_added_later_are_walked_by_construction() -> None:
    body = {"model": "m", "instructions": "be brief", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}
    assert sites(body, "responses") == {
        "instructions": "be brief",
        "input[0].content[0].type": "input_text",
        "input[0].content[0].text": "hi",
        "input[0].role": "user",
    }
