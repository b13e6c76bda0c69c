"""Router behaviour against the embedded mock and local fake OpenAI servers."""

from __future__ import annotations

import gzip
from typing import Any

import aiohttp
import orjson
import pytest

from adapters.types import Completion
from pep.errors import BadRequest, NotFound, RateLimited, UpstreamError, UpstreamTimeout
from pep.routing import router as router_module
from pep.routing.router import Router
from pep.routing.settings import Deployment, ModelSettings, ProviderSettings
from pep.routing.stream import ChunkStream
from tests.fakes import openai_wire
from tests.adapters.routed import route_fails
from tests.fakes.server import FakeServer, Reply

USER = {"role": "user", "content": "hello there world"}


def mock_router(session: aiohttp.ClientSession) -> Router:
    return Router({"m": ProviderSettings(kind="mock")},
                  {"mock-gpt": ModelSettings(provider="m", model="mock-1"),
                   "mock-emb": ModelSettings(provider="m", model="e", embeddings=True)}, session)


def two_deployments(first: str, second: str, **ps: Any) -> tuple[dict[str, ProviderSettings],
                                                                  dict[str, ModelSettings]]:
    common = {"kind": "openai", "api_key": "sk-test-key-1234", "max_retries": 0,
              "retry_backoff_s": 0, **ps}
    providers = {"a": ProviderSettings(base_url=first, **common),
                 "b": ProviderSettings(base_url=second, **common)}
    models = {"gpt": ModelSettings(provider="a", model="gpt-a",
                                   fallbacks=(Deployment(provider="b", model="gpt-b"),))}
    return providers, models


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt", "messages": [USER], **extra}


async def test_mock_answer_counts_words_as_tokens(session: aiohttp.ClientSession) -> None:
    c = await mock_router(session).chat(chat(model="mock-gpt"), "mock-gpt", request_id="r")
    assert isinstance(c, Completion)
    text = c.body["choices"][0]["message"]["content"]
    assert text.endswith("You said: hello there world")
    assert c.usage.prompt_tokens == 3
    assert c.usage.completion_tokens == len(text.split())
    assert c.body["model"] == "mock-gpt"
    assert c.served.kind == "mock" and c.served.model == "mock-1"


async def test_mock_truncates_to_max_tokens(session: aiohttp.ClientSession) -> None:
    c = await mock_router(session).chat(chat(max_tokens=4), "mock-gpt", request_id="r")
    assert isinstance(c, Completion)
    assert c.body["choices"][0]["finish_reason"] == "length"
    assert len(c.body["choices"][0]["message"]["content"].split()) == 4
    assert c.usage.completion_tokens == 4


async def test_stream_sends_usage_chunk_only_when_asked(session: aiohttp.ClientSession) -> None:
    router = mock_router(session)
    for asked in (True, False):
        body = chat(stream=True, stream_options={"include_usage": asked})
        cs = await router.chat(body, "mock-gpt", request_id="r")
        assert isinstance(cs, ChunkStream)
        chunks = [c async for c in cs]
        usage_chunks = [c for c in chunks if c.get("usage")]
        assert len(usage_chunks) == (1 if asked else 0)
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"])
        assert cs.usage is not None and cs.usage.completion_tokens == len(text.split())
        assert chunks[-1 if not asked else -2]["choices"][0]["finish_reason"] == "stop"


async def test_mock_embeddings_are_deterministic(session: aiohttp.ClientSession) -> None:
    router = mock_router(session)
    body = {"model": "mock-emb", "input": ["a b", "c"], "dimensions": 5}
    one = await router.embeddings(body, "mock-emb", request_id="r")
    two = await router.embeddings(body, "mock-emb", request_id="r")
    assert one.body["data"] == two.body["data"]
    assert [len(d["embedding"]) for d in one.body["data"]] == [5, 5]
    assert one.usage.prompt_tokens == 3


async def test_unknown_model_is_not_found(session: aiohttp.ClientSession) -> None:
    with route_fails(NotFound):
        await mock_router(session).chat(chat(), "nope", request_id="r")


@pytest.mark.parametrize("key", ["api_base", "base_url", "api_key", "extra_headers"])
async def test_request_cannot_choose_endpoint_or_key(session: aiohttp.ClientSession,
                                                     key: str) -> None:
    with route_fails(BadRequest) as e:
        await mock_router(session).chat(chat(**{key: "http://evil"}), "mock-gpt", request_id="r")
    assert e.value.param == key


async def test_unknown_parameter_is_rejected_not_dropped(session: aiohttp.ClientSession) -> None:
    with route_fails(BadRequest) as e:
        await mock_router(session).chat(chat(frobnicate=1), "mock-gpt", request_id="r")
    assert e.value.param == "frobnicate"


async def test_upstream_gets_only_the_configured_key(session: aiohttp.ClientSession) -> None:
    async with FakeServer([openai_wire.reply("hi")]) as a, FakeServer([]) as b:
        router = Router(*two_deployments(a.url, b.url), session)
        await router.chat(chat(), "gpt", request_id="r")
    sent = a.requests[0]
    assert sent.headers["authorization"] == "Bearer sk-test-key-1234"
    assert orjson.loads(sent.body)["model"] == "gpt-a"
    assert "cookie" not in sent.headers and "x-api-key" not in sent.headers


@pytest.mark.parametrize("failure", [
    Reply(500, b'{"error":{"message":"boom"}}'),
    Reply(429, b'{"error":{"message":"slow down"}}', {"retry-after": "1"}),
    Reply(200, openai_wire.completion_bytes("late"), delay_s=1.0),
])
async def test_second_deployment_serves_when_first_fails(session: aiohttp.ClientSession,
                                                         failure: Reply) -> None:
    async with FakeServer([failure]) as a, FakeServer([openai_wire.reply("from b")]) as b:
        router = Router(*two_deployments(a.url, b.url, first_byte_timeout_s=0.3), session)
        c = await router.chat(chat(), "gpt", request_id="r")
    assert isinstance(c, Completion)
    assert c.body["choices"][0]["message"]["content"] == "from b"
    assert c.served.provider == "b" and c.served.model == "gpt-b"
    assert [a["outcome"] for a in c.served.attempts] == ["error", "ok"]
    assert c.served.attempts[0]["provider"] == "a"


async def test_rate_limit_retry_after_is_passed_on(session: aiohttp.ClientSession) -> None:
    limited = Reply(429, b'{"error":{"message":"slow down"}}', {"retry-after": "7"})
    async with FakeServer([limited]) as a, FakeServer([limited]) as b:
        router = Router(*two_deployments(a.url, b.url, max_retry_wait_s=0), session)
        with route_fails(RateLimited) as e:
            await router.chat(chat(), "gpt", request_id="r")
    assert e.value.headers["Retry-After"] == "7"
    assert [(a["provider"], a["status"]) for a in e.failure.attempts] == [("a", 429), ("b", 429)]
    # The audit names the last deployment really tried, with every attempt.
    assert e.failure.served is not None and e.failure.served.provider == "b"
    assert e.failure.served.model == "gpt-b" and e.failure.served.attempts == e.failure.attempts


async def test_a_request_refused_before_routing_names_no_deployment(
        session: aiohttp.ClientSession) -> None:
    with route_fails(NotFound) as e:
        await mock_router(session).embeddings({"input": "x"}, "nope", request_id="r")
    assert e.failure.served is None and e.failure.attempts == []


async def test_server_error_is_retried_in_place_before_falling_back(
        session: aiohttp.ClientSession) -> None:
    boom = Reply(503, b'{"error":{"message":"busy"}}')
    async with FakeServer([boom, openai_wire.reply("second try")]) as a, FakeServer([]) as b:
        router = Router(*two_deployments(a.url, b.url, max_retries=1), session)
        c = await router.chat(chat(), "gpt", request_id="r")
    assert isinstance(c, Completion)
    assert c.served.provider == "a" and len(a.requests) == 2 and not b.requests


async def test_all_deployments_failing_is_bad_gateway(session: aiohttp.ClientSession) -> None:
    boom = Reply(500, b'{"error":{"message":"boom"}}')
    async with FakeServer([boom]) as a, FakeServer([boom]) as b:
        with route_fails(UpstreamError) as e:
            await Router(*two_deployments(a.url, b.url), session).chat(chat(), "gpt",
                                                                        request_id="r")
    assert e.value.status == 502


async def test_unreachable_deployment_falls_back(session: aiohttp.ClientSession) -> None:
    async with FakeServer([openai_wire.reply("b")]) as b:
        router = Router(*two_deployments("http://127.0.0.1:9", b.url), session)
        c = await router.chat(chat(), "gpt", request_id="r")
    assert c.served.provider == "b"
    assert c.served.attempts[0]["error"] == "upstream_unreachable"


async def test_only_timeouts_everywhere_is_gateway_timeout(
        session: aiohttp.ClientSession) -> None:
    slow = Reply(200, openai_wire.completion_bytes("late"), delay_s=1.0)
    async with FakeServer([slow]) as a, FakeServer([slow]) as b:
        router = Router(*two_deployments(a.url, b.url, first_byte_timeout_s=0.2), session)
        with route_fails(UpstreamTimeout):
            await router.chat(chat(), "gpt", request_id="r")


async def test_open_circuit_skips_the_failing_deployment(session: aiohttp.ClientSession) -> None:
    boom = Reply(500, b'{"error":{"message":"boom"}}')
    now = [0.0]
    async with FakeServer([boom, boom, openai_wire.reply("a again")]) as a, \
            FakeServer([openai_wire.reply("b") for _ in range(3)]) as b:
        providers, models = two_deployments(a.url, b.url, breaker_failures=2,
                                            breaker_cooldown_s=10)
        router = Router(providers, models, session, clock=lambda: now[0])
        for _ in range(3):
            c = await router.chat(chat(), "gpt", request_id="r")
        assert len(a.requests) == 2 and len(b.requests) == 3
        assert c.served.attempts[0]["error"] == "circuit_open"
        now[0] = 11.0  # cooldown over: one trial request goes to a again
        c = await router.chat(chat(), "gpt", request_id="r")
    assert c.served.provider == "a" and len(a.requests) == 3


async def test_stream_idle_timeout_mid_stream_is_gateway_timeout(
        session: aiohttp.ClientSession) -> None:
    reply = openai_wire.stream_reply(["a", "b"])
    reply.chunk_delay_s = 1.0
    async with FakeServer([reply]) as a, FakeServer([]) as b:
        router = Router(*two_deployments(a.url, b.url, idle_timeout_s=0.2), session)
        cs = await router.chat(chat(stream=True), "gpt", request_id="r")
        assert isinstance(cs, ChunkStream)
        with pytest.raises(UpstreamTimeout):
            async for _ in cs:
                pass


async def test_provider_key_never_appears_in_errors(session: aiohttp.ClientSession) -> None:
    leak = Reply(400, b'{"error":{"message":"bad request for key sk-test-key-1234"}}')
    async with FakeServer([leak]) as a, FakeServer([]) as b:
        with route_fails(BadRequest) as e:
            await Router(*two_deployments(a.url, b.url), session).chat(chat(), "gpt",
                                                                        request_id="r")
    assert "sk-test-key-1234" not in e.value.message
    assert not b.requests  # a 400 is the client's problem: no fallback


async def test_rejected_gateway_credentials_do_not_echo_provider_text(
        session: aiohttp.ClientSession) -> None:
    denied = Reply(401, b'{"error":{"message":"Incorrect API key provided: sk-te***1234"}}')
    async with FakeServer([denied]) as a, FakeServer([denied]) as b:
        with route_fails(UpstreamError) as e:
            await Router(*two_deployments(a.url, b.url), session).chat(chat(), "gpt",
                                                                        request_id="r")
    assert "sk-" not in e.value.message and e.value.code == "upstream_auth"


@pytest.mark.parametrize("tools", [[{"type": "function"}], [{"function": {"parameters": 5}}],
                                   "not-a-list"])
async def test_malformed_tools_are_a_400_not_a_crash(session: aiohttp.ClientSession,
                                                     tools: Any) -> None:
    router = Router({"a": ProviderSettings(kind="anthropic", api_key="k-123456"),
                     "m": ProviderSettings(kind="mock")},
                    {"claude": ModelSettings(provider="a", model="c"),
                     "mock-gpt": ModelSettings(provider="m", model="m")}, session)
    for model in ("claude", "mock-gpt"):
        with route_fails(BadRequest):
            await router.chat(chat(model=model, tools=tools), model, request_id="r")


def test_an_attempt_that_never_reached_the_provider_hands_back_the_trial_slot() -> None:
    from pep.routing.breaker import CircuitBreaker

    now = [0.0]
    breaker = CircuitBreaker(1, 10, lambda: now[0])
    breaker.failure()
    assert not breaker.allow()
    now[0] = 11.0
    assert breaker.allow()  # the half-open trial ...
    breaker.abandon()  # ... found no free connection: it proved nothing
    assert breaker.allow() and breaker.is_open  # the next request may probe instead


async def test_a_stream_dropped_without_close_hands_back_its_pool_slot(
        session: aiohttp.ClientSession) -> None:
    import gc

    async with FakeServer(lambda _: openai_wire.stream_reply(["a", "b"])) as a, \
            FakeServer([]) as b:
        router = Router(*two_deployments(a.url, b.url, max_connections=1, pool_timeout_s=0.2),
                        session)
        cs = await router.chat(chat(stream=True), "gpt", request_id="r")
        assert isinstance(cs, ChunkStream)
        del cs  # never iterated, never closed
        gc.collect()
        again = await router.chat(chat(stream=True), "gpt", request_id="r")
        assert isinstance(again, ChunkStream)
        assert [c async for c in again]
    assert len(a.requests) == 2 and not b.requests


def one_provider(url: str) -> tuple[dict[str, ProviderSettings], dict[str, ModelSettings]]:
    return ({"a": ProviderSettings(kind="openai", base_url=url, api_key="sk-test-key-1234",
                                   max_retries=0)},
            {"gpt": ModelSettings(provider="a", model="gpt-a")})


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_a_whole_answer_is_read_as_sent_compressed_or_not(
    session: aiohttp.ClientSession, encoding: str | None,
) -> None:
    doc = openai_wire.completion("x" * 5000)
    body = orjson.dumps(doc)
    headers = {"content-type": "application/json"}
    if encoding is not None:
        body = gzip.compress(body)
        headers["content-encoding"] = encoding
    async with FakeServer([Reply(200, body, headers=headers)]) as fake:
        c = await Router(*one_provider(fake.url + "/v1"), session).chat(chat(), "gpt",
                                                                        request_id="r")
    assert isinstance(c, Completion)
    assert c.body["choices"] == doc["choices"] and c.body["model"] == "gpt"


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_the_response_size_limit_holds_however_the_body_arrives(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch, encoding: str | None,
) -> None:
    # 5,000 characters of answer against a 1,000-byte limit: whole in the first read
    # (the one-call path) or compressed to far less than the limit on the wire.
    monkeypatch.setattr(router_module, "MAX_RESPONSE_BYTES", 1000)
    body = orjson.dumps(openai_wire.completion("x" * 5000))
    headers = {"content-type": "application/json"}
    if encoding is not None:
        body = gzip.compress(body)
        headers["content-encoding"] = encoding
        assert len(body) < 1000
    async with FakeServer([Reply(200, body, headers=headers)]) as fake:
        with route_fails(UpstreamError) as caught:
            await Router(*one_provider(fake.url + "/v1"), session).chat(chat(), "gpt",
                                                                        request_id="r")
    assert "too large" in caught.value.message


async def test_a_cookie_a_provider_sets_is_never_sent_back() -> None:
    # Cloudflare in front of a provider sets cookies on every answer; the provider session is
    # shared by every user, so it must not keep them (a host name, not an IP: aiohttp's
    # default jar would store these and send them with the next request).
    cookies = {"content-type": "application/json",
               "set-cookie": "__cf_bm=abc123; path=/; domain=localhost; HttpOnly"}
    from pep.routing.session import provider_session

    async with FakeServer([Reply(200, openai_wire.completion_bytes("one"), headers=cookies),
                           openai_wire.reply("two")]) as fake, provider_session() as session:
        router = Router(*one_provider(fake.url.replace("127.0.0.1", "localhost") + "/v1"),
                        session)
        for _ in range(2):
            await router.chat(chat(), "gpt", request_id="r")
    assert len(fake.requests) == 2
    assert all("cookie" not in r.headers for r in fake.requests)
