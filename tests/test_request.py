"""The request validation step (pep/validation.py, pep/request.py): what a client may send,
checked once before policy, each refusal a 400 naming the offending parameter; and what the
policy sees of an accepted request."""

from __future__ import annotations

from typing import Any

import pytest

from pep.errors import BadRequest
from pep.validation import FORBIDDEN_KEYS, reject_forbidden
from pep.request import (
    TOKEN_LIMIT_FIELDS,
    message_text,
    normalize_chat,
    normalize_embeddings,
)

USER = {"role": "user", "content": "Hello"}


def chat(body: Any, **kw: Any) -> Any:
    return normalize_chat(body, normalise_text=lambda t: t.lower(), **kw)


def embed(body: Any) -> Any:
    return normalize_embeddings(body, normalise_text=lambda t: t.lower())


def refused(fn: Any, body: Any) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        fn(body)
    assert info.value.status == 400
    return info.value


# -- accepted requests ----------------------------------------------------------------------


def test_a_chat_request_is_normalised_for_the_policy() -> None:
    body = {"model": "mock-gpt", "messages": [{"role": "system", "content": "Be Terse"}, USER],
            "temperature": 0.2, "max_tokens": 50,
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    req = chat(body)
    assert (req.api, req.inbound_format, req.model, req.stream) == (
        "chat.completions", "openai", "mock-gpt", False)
    assert req.body is body  # forwarded as validated (obligations copy before changing it)
    assert req.roles == ["system", "user"]
    assert req.texts == ["be terse", "hello"]  # normalised for detection
    assert req.tools == ["get_weather"]
    assert req.params == {"temperature": 0.2, "max_tokens": 50}
    assert req.max_tokens == 50
    assert req.estimated_tokens == len("be tersehello") // 4 + 4 * 2


def test_estimated_tokens_count_every_character_at_four_per_token() -> None:
    # 15 characters: one more would be another token, so an off-by-one shows.
    req = chat({"model": "m", "messages": [{"role": "user", "content": "a" * 7},
                                           {"role": "user", "content": "b" * 8}]})
    assert req.estimated_tokens == 15 // 4 + 4 * 2
    assert embed({"model": "e", "input": ["a" * 8]}).estimated_tokens == 8 // 4 + 1
    assert embed({"model": "e", "input": ["a" * 3, "b" * 4]}).estimated_tokens == 7 // 4 + 1


def test_dialect_and_api_are_recorded() -> None:
    req = chat({"model": "m", "messages": [USER], "stream": True}, inbound_format="anthropic",
               api="messages")
    assert (req.inbound_format, req.api, req.stream) == ("anthropic", "messages", True)


@pytest.mark.parametrize("role", ["system", "developer", "user", "assistant", "tool", "function"])
def test_every_chat_role_is_accepted(role: str) -> None:
    assert chat({"model": "m", "messages": [{"role": role, "content": "x"}]}).roles == [role]


def test_content_parts_text_is_joined_and_other_parts_carry_no_text() -> None:
    content = [{"type": "text", "text": "One"}, {"type": "image_url", "image_url": {"url": "x"}},
               {"type": "text", "text": "Two"}]
    assert message_text(content, 0) == "One\nTwo"
    assert message_text(None, 0) == ""
    assert message_text("plain", 0) == "plain"
    assert chat({"model": "m", "messages": [{"role": "assistant", "content": None}]}).texts == [""]


def test_the_smaller_of_both_token_limits_is_what_the_policy_sees() -> None:
    assert TOKEN_LIMIT_FIELDS == ("max_completion_tokens", "max_tokens")
    both = chat({"model": "m", "messages": [USER], "max_tokens": 500, "max_completion_tokens": 400})
    assert both.max_tokens == 400
    assert chat({"model": "m", "messages": [USER], "max_tokens": 300,
                 "max_completion_tokens": 900}).max_tokens == 300
    assert chat({"model": "m", "messages": [USER], "max_completion_tokens": 1}).max_tokens == 1
    assert chat({"model": "m", "messages": [USER], "max_tokens": None}).max_tokens is None
    assert chat({"model": "m", "messages": [USER]}).max_tokens is None


def test_an_embeddings_request_is_normalised() -> None:
    body = {"model": "mock-embed", "input": ["Hello There", [1, 2, 3], 7], "dimensions": 8}
    req = embed(body)
    assert req.body is body
    assert (req.api, req.inbound_format, req.model, req.stream) == (
        "embeddings", "openai", "mock-embed", False)
    assert req.texts == ["hello there", "", ""]  # token arrays carry no inspectable text
    assert req.roles == ["user"] * 3
    assert req.params == {"dimensions": 8}
    assert req.estimated_tokens == len("hello there") // 4 + 1
    assert embed({"model": "e", "input": "One"}).texts == ["one"]


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(FORBIDDEN_KEYS))
def test_nothing_in_a_body_chooses_where_the_gateway_connects(key: str) -> None:
    body = {"model": "m", "messages": [USER], "input": "x", key: "http://evil.example"}
    err = refused(reject_forbidden, body)
    assert (err.param, err.code) == (key, "forbidden_parameter")
    assert err.message == (f"parameter {key!r} is not allowed: upstream endpoints and "
                           "credentials come from gateway configuration")


def test_the_forbidden_list_covers_urls_credentials_and_headers() -> None:
    assert {"api_base", "base_url", "api_key", "azure_endpoint", "url", "extra_headers",
            "aws_secret_access_key"} <= FORBIDDEN_KEYS
    reject_forbidden({"model": "m", "messages": [USER], "temperature": 1})  # nothing to refuse


def test_several_forbidden_keys_name_the_first_sent() -> None:
    err = refused(reject_forbidden, {"model": "m", "url": "u", "api_key": "k"})
    assert err.param == "url" and "'url'" in err.message


@pytest.mark.parametrize("fn", [chat, embed], ids=["chat", "embeddings"])
@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_a_body_that_is_not_an_object_is_refused(fn: Any, body: Any) -> None:
    err = refused(fn, body)
    assert err.message == "request body must be a JSON object" and err.param is None


@pytest.mark.parametrize("fn", [chat, embed], ids=["chat", "embeddings"])
@pytest.mark.parametrize("model", [None, "", 3, ["m"]])
def test_model_must_be_a_non_empty_string(fn: Any, model: Any) -> None:
    body: dict[str, Any] = {"messages": [USER], "input": "x"}
    if model is not None:
        body["model"] = model
    err = refused(fn, body)
    assert (err.param, err.message) == ("model", "'model' is required and must be a non-empty string")


@pytest.mark.parametrize("messages", [None, [], "hi", {"role": "user"}])
def test_messages_must_be_a_non_empty_array(messages: Any) -> None:
    body: dict[str, Any] = {"model": "m"}
    if messages is not None:
        body["messages"] = messages
    err = refused(chat, body)
    assert (err.param, err.message) == ("messages", "'messages' must be a non-empty array")


@pytest.mark.parametrize("stream", ["true", 1, None])
def test_stream_must_be_a_boolean(stream: Any) -> None:
    err = refused(chat, {"model": "m", "messages": [USER], "stream": stream})
    assert (err.param, err.message) == ("stream", "'stream' must be a boolean")


def test_each_message_must_be_an_object() -> None:
    err = refused(chat, {"model": "m", "messages": [USER, "hi"]})
    assert (err.param, err.message) == ("messages[1]", "messages[1] must be an object")


@pytest.mark.parametrize("role", [None, "root", "User", 1])
def test_each_message_needs_a_known_role(role: Any) -> None:
    msg = {"content": "x"} if role is None else {"role": role, "content": "x"}
    err = refused(chat, {"model": "m", "messages": [USER, msg]})
    assert (err.param, err.message) == ("messages[1].role", "messages[1].role is missing or invalid")


@pytest.mark.parametrize("content", [3, {"type": "text", "text": "x"}, True])
def test_content_must_be_a_string_parts_or_null(content: Any) -> None:
    err = refused(chat, {"model": "m", "messages": [USER, {"role": "user", "content": content}]})
    assert err.param == "messages[1].content"
    assert err.message == "messages[1].content must be a string, an array of parts or null"


@pytest.mark.parametrize("part", ["text", {"text": "x"}, {"type": 3}, None])
def test_content_parts_must_be_typed_objects(part: Any) -> None:
    err = refused(chat, {"model": "m", "messages": [{"role": "user", "content": [part]}]})
    assert err.param == "messages[0].content"
    assert err.message == "messages[0].content parts must be objects with a 'type'"


@pytest.mark.parametrize("text", [None, 3, ["x"]])
def test_text_parts_need_string_text(text: Any) -> None:
    part: dict[str, Any] = {"type": "text"}
    if text is not None:
        part["text"] = text
    err = refused(chat, {"model": "m", "messages": [USER, {"role": "user", "content": [part]}]})
    assert err.param == "messages[1].content"
    assert err.message == "messages[1].content text part needs a string 'text'"


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", [0, -1, "5", 2.5, True, False])
def test_token_limits_must_be_positive_integers(key: str, value: Any) -> None:
    err = refused(chat, {"model": "m", "messages": [USER], key: value})
    assert (err.param, err.message) == (key, f"'{key}' must be a positive integer")


@pytest.mark.parametrize("tools", ["get_weather", {"function": {"name": "x"}}])
def test_tools_must_be_an_array(tools: Any) -> None:
    err = refused(chat, {"model": "m", "messages": [USER], "tools": tools})
    assert (err.param, err.message) == ("tools", "'tools' must be an array")


@pytest.mark.parametrize("tool", ["x", {"type": "function"}, {"function": "x"},
                                  {"function": {"name": 3}}, {"function": {}}])
def test_each_tool_needs_a_function_name(tool: Any) -> None:
    ok = {"type": "function", "function": {"name": "ok"}}
    err = refused(chat, {"model": "m", "messages": [USER], "tools": [ok, tool]})
    assert (err.param, err.message) == ("tools[1]", "tools[1].function.name is required")


@pytest.mark.parametrize("inputs", [None, [], 3, {"text": "x"}])
def test_embeddings_input_must_be_a_string_or_non_empty_array(inputs: Any) -> None:
    body: dict[str, Any] = {"model": "e"}
    if inputs is not None:
        body["input"] = inputs
    err = refused(embed, body)
    assert (err.param, err.message) == ("input", "'input' must be a string or a non-empty array")


@pytest.mark.parametrize("item", [None, {"text": "x"}, [1, "2"], 2.5, ["a"]])
def test_each_embeddings_input_is_a_string_or_tokens(item: Any) -> None:
    err = refused(embed, {"model": "e", "input": ["ok", item]})
    assert (err.param, err.message) == ("input", "input[1] must be a string or token array")
