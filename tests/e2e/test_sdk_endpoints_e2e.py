"""The rest of what the SDKs call: legacy completions, Anthropic count_tokens and model
listing in Anthropic's shape, the ``request-id`` header, ``usage: null`` on stream chunks,
and the Responses API translated to Anthropic and Gemini providers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import orjson
import pytest

from tests.e2e.conftest import upstream_config
from tests.e2e.test_providers_e2e import QUESTION, TOOL, routed_to
from tests.fakes import wire
from tests.fakes.server import FakeServer
from tests.harness import error_body, running_gateway


async def test_legacy_completions_plain_and_streamed(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        plain = await client.completions.create(model="mock-gpt", prompt="Say hi", max_tokens=50)
        assert plain.object == "text_completion" and plain.id.startswith("cmpl-")
        assert plain.choices[0].text == "This is the regogate mock provider. You said: Say hi"
        assert plain.choices[0].finish_reason == "stop"
        assert plain.usage is not None and plain.usage.completion_tokens == 10
        text, usage = "", None
        stream = await client.completions.create(model="mock-gpt", prompt="Say hi", stream=True,
                                                 max_tokens=50,
                                                 stream_options={"include_usage": True})
        async for chunk in stream:
            assert chunk.object == "text_completion"
            text += chunk.choices[0].text if chunk.choices else ""
            usage = chunk.usage or usage
        assert text == plain.choices[0].text and usage is not None
        records = await gw.audit_records()
    assert {r["what"]["api"] for r in records if r["event"] == "request.intent"} == {
        "completions"}


async def test_legacy_completions_default_to_sixteen_tokens_and_refuse_echo(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.openai("alice")
        long = await client.completions.create(model="mock-gpt", prompt=" ".join(["w"] * 40))
        assert len(long.choices[0].text.split()) == 16
        assert long.choices[0].finish_reason == "length"
        for kw, param in (({"echo": True}, "echo"), ({"suffix": "end"}, "suffix"),
                          ({"logprobs": 2}, "logprobs"), ({"best_of": 3}, "best_of")):
            with pytest.raises(openai.BadRequestError) as got:
                await client.completions.create(model="mock-gpt", prompt="x", **kw)
            assert error_body(got.value)["param"] == param
        with pytest.raises(openai.BadRequestError) as got:
            await client.completions.create(model="mock-gpt", prompt=["a", "b"])
        assert error_body(got.value)["param"] == "prompt"


async def test_bob_may_not_use_the_admin_model_through_legacy_completions(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        with pytest.raises(openai.PermissionDeniedError) as got:
            await gw.openai("bob").completions.create(model="mock-gpt-admin", prompt="hi")
    assert error_body(got.value)["code"] == "model_not_allowed"


async def test_anthropic_count_tokens_is_policy_checked_and_audited(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.anthropic("alice")
        raw = await client.messages.with_raw_response.count_tokens(
            model="mock-gpt", messages=[{"role": "user", "content": "count these words please"}],
            system="be brief")
        counted = await raw.parse()
        assert counted.input_tokens > 0
        with pytest.raises(anthropic.PermissionDeniedError) as got:
            await gw.anthropic("bob").messages.count_tokens(
                model="mock-gpt-admin", messages=[{"role": "user", "content": "hi"}])
        assert error_body(got.value)["error"]["type"] == "permission_error"
        records = await gw.audit_records()
    mine = [r for r in records if r["request_id"] == raw.headers["request-id"]]
    assert [r["event"] for r in mine] == ["request.completion"]
    assert mine[0]["what"]["api"] == "messages.count_tokens"
    assert any(r["event"] == "policy.deny" and r["what"]["api"] == "messages.count_tokens"
               for r in records)


async def test_anthropic_sdk_lists_models_in_its_own_shape(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        client = gw.anthropic("alice")
        page = await client.models.list()
        names = [m.id for m in page.data]
        assert "mock-gpt" in names and "mock-gpt-admin" not in names
        assert all(m.type == "model" and m.display_name and m.created_at for m in page.data)
        one = await client.models.retrieve("mock-gpt")
        assert one.id == "mock-gpt" and one.display_name == "mock-gpt"
        openai_page = await gw.openai("alice").models.list()
        assert all(m.object == "model" for m in openai_page.data)


async def test_anthropic_sdk_reads_the_request_id_header(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        raw = await gw.anthropic("alice").messages.with_raw_response.create(
            model="mock-gpt", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
        msg = await raw.parse()
    assert msg._request_id == raw.headers["x-request-id"]
    assert msg._request_id.startswith("req_")


async def test_stream_chunks_carry_usage_null_until_the_usage_chunk(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        body = {"model": "mock-gpt", "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": "three words here"}]}
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.url + "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {gw.token('alice')}"}) as r:
                raw = (await r.read()).decode()
        plain_body = {**body, "stream_options": None}
        async with aiohttp.ClientSession() as s:
            async with s.post(gw.url + "/v1/chat/completions", json=plain_body,
                              headers={"Authorization": f"Bearer {gw.token('alice')}"}) as r:
                without = (await r.read()).decode()
    chunks = [orjson.loads(line[6:]) for line in raw.splitlines()
              if line.startswith("data: {")]
    assert all("usage" in c for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    assert all("usage" not in orjson.loads(line[6:]) for line in without.splitlines()
               if line.startswith("data: {"))


@pytest.mark.parametrize("kind", ["anthropic", "gemini", "bedrock"])
async def test_responses_api_is_translated_for_other_providers(kind: str, tmp_path: Path) -> None:
    async with FakeServer(wire.script(kind)) as fake, \
            running_gateway(tmp_path, config=routed_to(kind, fake)) as gw:
        client = gw.openai("alice")
        plain = await client.responses.create(model="mock-gpt", input=QUESTION)
        assert plain.output_text == "It is 18°C in Paris."
        assert plain.usage is not None and plain.usage.input_tokens == 42

        async with client.responses.stream(model="mock-gpt", input=QUESTION) as s:
            deltas = [e.delta async for e in s if e.type == "response.output_text.delta"]
            final = await s.get_final_response()
        assert "".join(deltas) == final.output_text == "It is 18°C in Paris."
        assert final.usage is not None and final.usage.output_tokens == 11

        tool = {"type": "function", **TOOL}
        first = await client.responses.create(model="mock-gpt", input=QUESTION, tools=[tool])
        call = next(o for o in first.output if o.type == "function_call")
        assert call.name == "get_weather" and orjson.loads(call.arguments) == {"city": "Paris"}
        second = await client.responses.create(
            model="mock-gpt", previous_response_id=first.id, tools=[tool],
            input=[{"type": "function_call_output", "call_id": call.call_id,
                    "output": '{"temp_c":18}'}])
        assert second.output_text == "It is 18°C in Paris."
    for rec in fake.requests:
        assert gw.token("alice") not in str(rec.headers)


async def test_responses_reasoning_effort_is_refused_where_the_provider_cannot(
    tmp_path: Path,
) -> None:
    async with FakeServer(wire.script("anthropic")) as fake, \
            running_gateway(tmp_path, config=routed_to("anthropic", fake)) as gw:
        with pytest.raises(openai.BadRequestError) as got:
            await gw.openai("alice").responses.create(model="mock-gpt", input="hi",
                                                      reasoning={"effort": "high"})
    assert error_body(got.value)["code"] == "unsupported_parameter"
    assert fake.requests == []


async def test_instructions_and_input_items_are_inspected_like_messages(
    tmp_path: Path, upstream: FakeServer
) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        client = gw.openai("alice")
        cases: list[dict[str, Any]] = [
            {"instructions": key, "input": "hi"},
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": key}]}]},
            {"input": [{"type": "function_call_output", "call_id": "c1", "output": key}]},
        ]
        for case in cases:
            with pytest.raises(openai.PermissionDeniedError) as got:
                await client.responses.create(model="mock-gpt", **case)
            assert "private_key" in error_body(got.value)["message"]
    assert upstream.requests == []
