"""The OpenAI Responses API end to end with the official openai SDK: plain, streaming (every
event parsed by the SDK's own models), function tools, stored conversations owned by their
user, and the same identity, policy and audit as chat completions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from tests.e2e.conftest import upstream_config, write_bundle
from tests.e2e.test_policy_e2e import SECRET_ANSWER
from tests.fakes.openai_wire import reply, stream_reply
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import Gateway, deep_merge, error_body, running_gateway

WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def intents(records: list[dict[str, Any]], api: str = "responses") -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == "request.intent" and r["what"]["api"] == api]


async def test_alice_creates_a_plain_response_with_instructions_and_usage(
    tmp_path: Path, engine_config: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, config=engine_config) as gw:
        raw = await gw.openai("alice").responses.with_raw_response.create(
            model="mock-gpt", instructions="Be brief.", input="Hello, responses",
            metadata={"ticket": "T-1"}, temperature=0.2)
        resp = raw.parse()
        assert resp.id.startswith("resp_") and resp.object == "response"
        assert resp.status == "completed"
        assert resp.output_text == "This is the regogate mock provider. You said: Hello, responses"
        assert resp.output[0].type == "message" and resp.output[0].role == "assistant"
        assert resp.instructions == "Be brief." and resp.metadata == {"ticket": "T-1"}
        assert resp.usage is not None and resp.usage.output_tokens > 0
        assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
        request_id = raw.headers["x-request-id"]
        records = await gw.audit_records()
    mine = [r for r in records if r["request_id"] == request_id]
    assert [r["event"] for r in mine] == ["request.intent", "request.completion"]
    assert all(r["what"]["api"] == "responses" for r in mine)
    assert mine[1]["what"]["response_id"] == resp.id
    assert mine[1]["outcome"]["status"] == 200 and mine[1]["outcome"]["tokens_out"] > 0


async def test_streamed_response_emits_every_semantic_event_the_sdk_parses(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        events = []
        async with client.responses.stream(model="mock-gpt", input="stream this please") as s:
            async for ev in s:
                events.append(ev)
            final = await s.get_final_response()
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "This is the regogate mock provider. You said: stream this please"
    assert final.output_text == deltas and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == len(deltas.split())


async def test_function_tool_round_trip_plain_and_streamed(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        first = await client.responses.create(model="mock-gpt", input="Weather in Paris?",
                                              tools=[WEATHER], store=False)
        call = first.output[0]
        assert call.type == "function_call" and call.name == "get_weather"
        assert orjson.loads(call.arguments) == {"city": "Weather in Paris?"}
        follow = [{"role": "user", "content": "Weather in Paris?"},
                  call.model_dump(exclude_none=True),
                  {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}]
        final = await client.responses.create(model="mock-gpt", input=follow, tools=[WEATHER],
                                              store=False)
        assert final.output_text == "The tool returned: sunny"

        events = []
        async with client.responses.stream(model="mock-gpt", input="Weather?",
                                           tools=[WEATHER], store=False) as s:
            async for ev in s:
                events.append(ev)
            streamed = await s.get_final_response()
    types = [e.type for e in events]
    assert "response.function_call_arguments.delta" in types
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and orjson.loads(done[0].arguments) == {"city": "Weather?"}
    assert streamed.output[0].type == "function_call"
    assert streamed.output[0].arguments == done[0].arguments


REPLY = "Hello from the fake upstream."


def plain_or_stream(rec: Recorded) -> Reply:
    if orjson.loads(rec.body).get("stream"):
        return stream_reply([w + " " for w in REPLY.split()[:-1]] + [REPLY.split()[-1]])
    return reply(REPLY)


async def test_previous_response_id_carries_the_conversation_over_three_turns(
    tmp_path: Path,
) -> None:
    async with FakeServer(plain_or_stream) as upstream, \
            running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        client = gw.openai("alice")
        one = await client.responses.create(model="mock-gpt", input="My name is Zed.",
                                            instructions="Turn one rules.")
        two = await client.responses.create(model="mock-gpt", input="What is my name?",
                                            previous_response_id=one.id)
        three = client.responses.stream(model="mock-gpt", input="And again?",
                                              previous_response_id=two.id)
        async with three as s:
            await s.until_done()
            last = await s.get_final_response()
        fetched = await client.responses.retrieve(last.id)
        items = await client.responses.input_items.list(two.id, order="asc")
    sent = [orjson.loads(r.body)["messages"] for r in upstream.requests]
    assert sent[0] == [{"role": "system", "content": "Turn one rules."},
                       {"role": "user", "content": "My name is Zed."}]
    # Instructions are not carried over (as OpenAI documents); the turns are.
    assert sent[2] == [{"role": "user", "content": "My name is Zed."},
                       {"role": "assistant", "content": REPLY},
                       {"role": "user", "content": "What is my name?"},
                       {"role": "assistant", "content": REPLY},
                       {"role": "user", "content": "And again?"}]
    assert fetched.id == last.id and fetched.output_text == REPLY == last.output_text
    assert fetched.previous_response_id == two.id
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [
        ("message", "user", "What is my name?")]


async def test_store_false_keeps_nothing_to_fetch_or_continue(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        resp = await client.responses.create(model="mock-gpt", input="ephemeral", store=False)
        with pytest.raises(openai.NotFoundError) as got:
            await client.responses.retrieve(resp.id)
        assert error_body(got.value)["code"] == "response_not_found"
        with pytest.raises(openai.NotFoundError):
            await client.responses.create(model="mock-gpt", input="more",
                                          previous_response_id=resp.id)


async def test_another_users_response_is_404_exactly_like_one_that_never_existed(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        alice, bob = gw.openai("alice"), gw.openai("bob")
        resp = await alice.responses.create(model="mock-gpt", input="alice's secret plans")
        answers = []
        for rid in (resp.id, "resp_" + "0" * 32):
            for call in (bob.responses.retrieve(rid), bob.responses.delete(rid),
                         bob.responses.input_items.list(rid),
                         bob.responses.create(model="mock-gpt", input="x",
                                              previous_response_id=rid)):
                with pytest.raises(openai.NotFoundError) as got:
                    await call
                answers.append({**error_body(got.value), "message": error_body(got.value)["message"].replace(
                    rid, "ID")})
        assert answers[:4] == answers[4:]  # nothing tells bob the id exists
        assert (await alice.responses.retrieve(resp.id)).output_text.endswith(
            "alice's secret plans")
        await alice.responses.delete(resp.id)
        with pytest.raises(openai.NotFoundError):
            await alice.responses.retrieve(resp.id)
        records = await gw.audit_records()
    reads = [r for r in records if r["what"].get("api") in ("responses.read", "responses.delete")]
    assert {r["who"]["subject"] for r in reads} == {"alice", "bob"}
    assert all(r["event"] == "request.completion" for r in reads)
    assert [r["outcome"]["status"] for r in reads if r["who"]["subject"] == "bob"] == [404] * 6


async def test_policy_sees_the_conversation_chain_and_can_cap_it(tmp_path: Path) -> None:
    rego = ("package regogate\n\nimport rego.v1\n\n"
            "chain := object.get(input.request, [\"previous_response\", \"chain_length\"], 0)\n\n"
            "decision := {\"allow\": chain < 2, \"reasons\": [{\"code\": \"conversation_too_long\", "
            "\"message\": sprintf(\"chain %d, owner %s\", [chain, object.get(input.request, "
            "[\"previous_response\", \"owner\"], \"-\")])} | chain >= 2]}\n")
    config = {"policy": {"bundle": str(write_bundle(tmp_path / "bundle", rego))}}
    async with running_gateway(tmp_path, config=config) as gw:
        client = gw.openai("alice")
        one = await client.responses.create(model="mock-gpt", input="1")
        two = await client.responses.create(model="mock-gpt", input="2",
                                            previous_response_id=one.id)
        with pytest.raises(openai.PermissionDeniedError) as got:
            await client.responses.create(model="mock-gpt", input="3",
                                          previous_response_id=two.id)
    assert error_body(got.value)["code"] == "conversation_too_long"
    assert error_body(got.value)["message"] == "chain 2, owner alice"


async def test_obligations_apply_to_responses_cap_redaction_and_system_prompt(
    tmp_path: Path, upstream: FakeServer
) -> None:
    decision = ('{"allow": true, "obligations": {"max_tokens": 7, "redact": ["email"], '
                '"system_prompt": "Policy prompt."}}')
    rego = f"package regogate\n\nimport rego.v1\n\ndecision := {decision}\n"
    config = deep_merge(upstream_config(upstream),
                        {"policy": {"bundle": str(write_bundle(tmp_path / "bundle", rego))}})
    async with running_gateway(tmp_path, config=config) as gw:
        client = gw.openai("alice")
        one = await client.responses.create(
            model="mock-gpt", instructions="Client rules.", max_output_tokens=500,
            input=[{"role": "user", "content": [
                {"type": "input_text", "text": "mail me at alice@example.com"}]}])
        await client.responses.create(model="mock-gpt", input="next",
                                      previous_response_id=one.id)
        items = await client.responses.input_items.list(one.id)
    first, second = (orjson.loads(r.body) for r in upstream.requests)
    assert first["max_tokens"] == 7
    assert first["messages"][0] == {"role": "system", "content": "Policy prompt."}
    assert first["messages"][1] == {"role": "system", "content": "Client rules."}
    assert "alice@example.com" not in orjson.dumps(first).decode()
    # The stored conversation is what was forwarded (redacted), without either system prompt:
    # the policy's is applied again on the next turn, never stored twice.
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert "alice@example.com" not in orjson.dumps(second).decode()
    assert "alice@example.com" not in items.data[0].content[0].text


async def test_audit_content_none_keeps_no_conversation(tmp_path: Path) -> None:
    rego = ('package regogate\n\nimport rego.v1\n\ndecision := {"allow": true, '
            '"obligations": {"audit_content": "none"}}\n')
    config = {"policy": {"bundle": str(write_bundle(tmp_path / "bundle", rego))}}
    async with running_gateway(tmp_path, config=config) as gw:
        client = gw.openai("alice")
        resp = await client.responses.create(model="mock-gpt", input="do not keep this")
        fetched = await client.responses.retrieve(resp.id)
        assert fetched.output == [] and fetched.status == "completed"
        with pytest.raises(openai.BadRequestError) as got:
            await client.responses.create(model="mock-gpt", input="more",
                                          previous_response_id=resp.id)
    assert error_body(got.value)["code"] == "previous_response_not_kept"
    db = (tmp_path / "gw-data" / "responses.db").read_bytes()
    assert b"do not keep this" not in db


@pytest.mark.parametrize("extra, param", [
    ({"tools": [{"type": "web_search"}]}, "tools"),
    ({"include": ["reasoning.encrypted_content"]}, "include"),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning"),
    ({"truncation": "auto"}, "truncation"),
    ({"background": True}, "background"),
    ({"conversation": "conv_1"}, "conversation"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input[0]"),
])
async def test_unsupported_parameters_are_a_400_naming_them_and_nothing_is_forwarded(
    tmp_path: Path, upstream: FakeServer, extra: dict[str, Any], param: str
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        with pytest.raises(openai.BadRequestError) as got:
            await gw.openai("alice").responses.create(
                **{"model": "mock-gpt", "input": "hi", **extra})
    assert error_body(got.value)["param"] == param
    assert upstream.requests == []


async def test_forbidden_upstream_keys_are_refused_on_responses(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        with pytest.raises(openai.BadRequestError) as got:
            await gw.openai("alice").responses.create(
                model="mock-gpt", input="hi", extra_body={"api_base": "http://169.254.169.254"})
    assert error_body(got.value)["code"] == "forbidden_parameter"
    assert upstream.requests == []


async def test_text_format_json_schema_and_reasoning_effort_reach_the_provider(
    tmp_path: Path, upstream: FakeServer
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        await gw.openai("alice").responses.create(
            model="mock-gpt", input="json please", reasoning={"effort": "low"},
            text={"format": {"type": "json_schema", "name": "thing", "schema": schema,
                             "strict": True}}, top_p=0.5, tool_choice="none",
            tools=[WEATHER])
    sent = orjson.loads(upstream.requests[0].body)
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "thing", "schema": schema, "strict": True}}
    assert sent["reasoning_effort"] == "low" and sent["top_p"] == 0.5
    assert sent["tool_choice"] == "none"
    assert sent["tools"][0]["function"]["name"] == "get_weather"


async def test_bob_is_refused_the_admin_model_on_responses_and_it_is_audited(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        with pytest.raises(openai.PermissionDeniedError) as got:
            await gw.openai("bob").responses.create(model="mock-gpt-admin", input="hi")
        records = await gw.audit_records()
    assert error_body(got.value)["code"] == "model_not_allowed"
    denials = [r for r in records if r["event"] == "policy.deny"]
    assert denials[-1]["what"]["api"] == "responses"
    assert intents(records) == []


async def test_output_policy_cuts_a_streamed_response_as_incomplete(tmp_path: Path) -> None:
    words = ["Here ", "is ", "the ", "key: "] + [
        SECRET_ANSWER[i:i + 8] for i in range(0, len(SECRET_ANSWER), 8)]
    async with FakeServer(lambda rec: stream_reply(words)) as up:
        config = deep_merge(upstream_config(up), {"policy": {"output_check_every_chars": 8}})
        async with running_gateway(tmp_path, config=config) as gw:
            events = []
            stream = await gw.openai("alice").responses.create(
                model="mock-gpt", stream=True, input="tell me a key")
            async for ev in stream:
                events.append(ev)
            records = await gw.audit_records()
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "content_filter"
    assert "END OPENSSH PRIVATE KEY" not in "".join(
        e.delta for e in events if e.type == "response.output_text.delta")
    assert records[-1]["event"] == "request.completion" and records[-1]["extra"]["output_cut"]


async def test_output_policy_withholds_a_plain_response_with_a_secret(tmp_path: Path) -> None:
    async with FakeServer(lambda rec: reply(SECRET_ANSWER)) as up:
        async with running_gateway(tmp_path, config=upstream_config(up)) as gw:
            with pytest.raises(openai.PermissionDeniedError) as got:
                await gw.openai("alice").responses.create(model="mock-gpt", input="key?")
    assert error_body(got.value)["phase"] == "output"
    assert "OPENSSH" not in orjson.dumps(got.value.body).decode()


async def _gw_raw(gw: Gateway, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    import aiohttp

    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + path, json=body,
                          headers={"Authorization": f"Bearer {gw.token('alice')}"}) as r:
            return r.status, await r.json()


async def test_malformed_input_items_are_400s_not_500s(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        for body, param in [
            ({"model": "mock-gpt"}, "input"),
            ({"model": "mock-gpt", "input": 7}, "input"),
            ({"model": "mock-gpt", "input": [{"type": "function_call", "name": "x"}]}, "input[0]"),
            ({"model": "mock-gpt", "input": [{"role": "wizard", "content": "x"}]}, "input[0]"),
            ({"model": "mock-gpt", "input": "x", "metadata": {"k": 1}}, "metadata"),
            ({"model": "mock-gpt", "input": "x", "previous_response_id": 5},
             "previous_response_id"),
            ({"model": "mock-gpt", "input": "x", "stream": "yes"}, "stream"),
        ]:
            status, doc = await _gw_raw(gw, "/v1/responses", body)
            assert status == 400, (body, doc)
            assert doc["error"]["param"] == param, (body, doc)


async def test_langchain_chat_openai_with_the_responses_api(tmp_path: Path) -> None:
    from langchain_openai import ChatOpenAI

    async with running_gateway(tmp_path) as gw:
        llm = ChatOpenAI(model="mock-gpt", base_url=f"{gw.url}/v1", api_key=gw.token("alice"),
                         use_responses_api=True, max_retries=0)
        answer = await llm.ainvoke("Hello from LangChain")
        assert answer.text == "This is the regogate mock provider. You said: Hello from LangChain"
        assert answer.response_metadata["id"].startswith("resp_")
        streamed = ""
        async for chunk in llm.astream("stream from LangChain"):
            streamed += chunk.text
        assert streamed == "This is the regogate mock provider. You said: stream from LangChain"
        with_tools = llm.bind_tools([WEATHER])
        call = await with_tools.ainvoke("Weather in Oslo?")
        assert call.tool_calls[0]["name"] == "get_weather"
        assert call.tool_calls[0]["args"] == {"city": "Weather in Oslo?"}
        records = await gw.audit_records()
    assert len(intents(records)) == 3
