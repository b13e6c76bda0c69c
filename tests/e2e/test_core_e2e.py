"""Issue 2, end to end: the official openai SDK, real dev IdP tokens, both policy engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import openai
import pytest

from pep import appkeys
from pep.audit.events import AuditUnavailable
from tests.e2e.conftest import upstream_config
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, error_body, running_gateway

HELLO = [{"role": "user", "content": "Hello, gateway"}]


async def test_alice_gets_a_plain_completion_from_the_mock_model(
    tmp_path: Path, engine_config: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, config=engine_config) as gw:
        resp = await gw.openai("alice").chat.completions.with_raw_response.create(
            model="mock-gpt", messages=HELLO)
        completion = resp.parse()
        assert completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.total_tokens > 0
        assert resp.headers["x-request-id"].startswith("req_")


async def test_alice_gets_a_streamed_completion_with_usage(
    tmp_path: Path, engine_config: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, config=engine_config) as gw:
        stream = await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=HELLO, stream=True, stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert text
        assert usage is not None and usage.completion_tokens > 0


async def test_bob_is_refused_the_admin_model_with_a_reason_code(
    tmp_path: Path, engine_config: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, config=engine_config) as gw:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await gw.openai("bob").chat.completions.create(model="mock-gpt-admin", messages=HELLO)
        error = error_body(info.value)
        assert info.value.status_code == 403
        assert error["code"] == "model_not_allowed"
        assert "model_not_allowed" in error["reasons"]


async def test_model_list_differs_between_bob_and_carol(
    tmp_path: Path, engine_config: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, config=engine_config) as gw:
        bob = {m.id for m in (await gw.openai("bob").models.list()).data}
        carol = {m.id for m in (await gw.openai("carol").models.list()).data}
        assert "mock-gpt" in bob and "mock-gpt-admin" not in bob
        assert {"mock-gpt", "mock-gpt-admin"} <= carol


async def test_embeddings_work_for_alice(tmp_path: Path, engine_config: dict[str, Any]) -> None:
    async with running_gateway(tmp_path, config=engine_config) as gw:
        result = await gw.openai("alice").embeddings.create(model="mock-embed", input=["a", "b"])
        assert len(result.data) == 2 and len(result.data[0].embedding) > 0


async def test_each_request_is_audited_as_intent_and_completion_with_the_decision_id(
    tmp_path: Path,
) -> None:
    async with running_gateway(tmp_path) as gw:
        resp = await gw.openai("alice").chat.completions.with_raw_response.create(
            model="mock-gpt", messages=HELLO)
        rid = resp.headers["x-request-id"]
        events = [e for e in await gw.audit_records() if e["request_id"] == rid]
    kinds = [e["event"] for e in events]
    assert kinds == ["request.intent", "request.completion"]
    assert all(e["decision_id"] == rid for e in events)
    assert events[0]["who"]["subject"] == "alice" and events[0]["who"]["teams"] == ["research"]
    assert events[1]["outcome"]["status"] == 200 and events[1]["outcome"]["tokens_out"] > 0
    assert events[0]["decision"]["policy_revision"].startswith("sha256:")


async def test_dead_opa_sidecar_gives_503_forwards_nothing_and_is_audited(
    tmp_path: Path, upstream: FakeServer
) -> None:
    dead = {"policy": {"engine": "opa", "opa_url": "http://127.0.0.1:9", "timeout_s": 0.3}}
    async with running_gateway(tmp_path, config=deep_merge(upstream_config(upstream), dead)) as gw:
        with pytest.raises(openai.InternalServerError) as info:
            await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        events = await gw.audit_records()
    assert info.value.status_code == 503
    assert error_body(info.value)["code"] == "policy_unavailable"
    assert upstream.requests == []
    assert [e["event"] for e in events] == ["policy.error"]
    assert events[0]["who"]["subject"] == "alice"


class FailingAuditStore:
    """Implements the AuditStore interface and can never make a record durable."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, Any]] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, event: dict[str, Any]) -> None:
        self.attempts.append(event)
        raise AuditUnavailable("disk full")

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        return False, {"error": "disk full"}


async def test_audit_store_failure_refuses_the_request_and_forwards_nothing(
    tmp_path: Path, upstream: FakeServer
) -> None:
    store = FailingAuditStore()
    async with running_gateway(tmp_path, config=upstream_config(upstream),
                               overrides={appkeys.AUDIT: lambda: store}) as gw:
        with pytest.raises(openai.InternalServerError) as info:
            await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/readyz") as r:
            ready = r.status
    assert info.value.status_code == 503 and error_body(info.value)["code"] == "audit_unavailable"
    assert upstream.requests == []
    assert [e["event"] for e in store.attempts] == ["request.intent"]
    assert ready == 503


async def test_inbound_credentials_never_reach_the_provider(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        token = gw.token("alice")
        await gw.openai(token=token).chat.completions.create(
            model="mock-gpt", messages=HELLO, extra_headers={"Cookie": "session=secret"})
    (sent,) = upstream.requests
    assert sent.headers["authorization"] == "Bearer sk-test-not-a-real-key"
    assert token not in str(sent.headers) and "cookie" not in sent.headers
    assert token.encode() not in sent.body
    assert b'"model":"gpt-upstream"' in sent.body.replace(b" ", b"")


# --- bad input: the right status and an OpenAI-style error, never a 500 -----------------

def _json(body: str) -> dict[str, str]:
    return {"Content-Type": "application/json"}


BAD_INPUTS: list[tuple[str, dict[str, str] | None, bytes, int, str]] = [
    ("missing token", None, b'{"model":"mock-gpt","messages":[]}', 401, "missing_token"),
    ("garbage token", {"Authorization": "Bearer garbage"}, b"{}", 401, "invalid_token"),
    ("malformed json", {}, b"{not json", 400, "invalid_json"),
    ("json array body", {}, b"[1,2]", 400, "invalid_request"),
    ("no messages", {}, b'{"model":"mock-gpt"}', 400, "invalid_request"),
    ("bad role", {}, b'{"model":"mock-gpt","messages":[{"role":"wizard","content":"x"}]}', 400,
     "invalid_request"),
    ("unknown model", {}, b'{"model":"nope","messages":[{"role":"user","content":"x"}]}', 404,
     "model_not_found"),
    ("client picks the upstream url", {},
     b'{"model":"mock-gpt","api_base":"http://evil","messages":[{"role":"user","content":"x"}]}',
     400, "forbidden_parameter"),
    ("bad max_tokens", {}, b'{"model":"mock-gpt","max_tokens":"9","messages":[{"role":"user","content":"x"}]}',
     400, "invalid_request"),
    ("oversized body", {}, b'{"model":"' + b"x" * (5 * 1024 * 1024) + b'"}', 413, "payload_too_large"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_gets_the_right_status_and_an_openai_style_error(
    tmp_path: Path, case: tuple[str, dict[str, str] | None, bytes, int, str]
) -> None:
    _, headers, body, status, code = case
    async with running_gateway(tmp_path) as gw:
        sent = {"Content-Type": "application/json"}
        if headers is not None:
            sent.update(headers or {"Authorization": f"Bearer {gw.token('alice')}"})
            sent.setdefault("Authorization", f"Bearer {gw.token('alice')}")
        async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/chat/completions", data=body, headers=sent
        ) as r:
            doc = await r.json()
            assert r.status == status, doc
            assert r.headers["x-request-id"]
    assert doc["error"]["code"] == code
    assert doc["error"]["type"] and doc["error"]["message"]
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


async def test_wrong_content_type_is_415(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        async with aiohttp.ClientSession() as s, s.post(
            gw.url + "/v1/chat/completions", data=b"{}",
            headers={"Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "text/plain"},
        ) as r:
            assert r.status == 415
            assert (await r.json())["error"]["code"] == "unsupported_media_type"


async def test_unknown_endpoint_and_wrong_method_are_openai_style(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/v1/nothing-here") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "unknown_endpoint"
        async with s.get(gw.url + "/v1/chat/completions") as r:
            assert r.status == 405 and (await r.json())["error"]["type"] == "invalid_request_error"


async def test_health_and_readiness_report_each_component(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/healthz") as r:
            assert r.status == 200
        async with s.get(gw.url + "/readyz") as r:
            doc = await r.json()
    assert r.status == 200
    # The embedded defaults serve the demo MCP server, so the MCP gateway reports too.
    assert set(doc["checks"]) == {"identity", "policy", "audit", "usage", "mcp"}
    assert all(c["ok"] for c in doc["checks"].values())
    assert doc["checks"]["mcp"] == {"ok": True, "servers": 1, "breakers_open": []}


async def test_a_gzip_bomb_is_refused_by_its_decompressed_size(tmp_path: Path) -> None:
    import gzip

    bomb = gzip.compress(b'{"model":"mock-gpt","pad":"' + b"0" * (6 * 1024 * 1024) + b'"}')
    assert len(bomb) < 64 * 1024
    async with running_gateway(tmp_path) as gw, aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/chat/completions", data=bomb, headers={
            "Authorization": f"Bearer {gw.token('alice')}", "Content-Type": "application/json",
            "Content-Encoding": "gzip"}) as r:
            assert r.status == 413
            assert (await r.json())["error"]["code"] == "payload_too_large"


async def test_streams_beyond_the_concurrency_limit_get_503_and_are_audited(
    tmp_path: Path,
) -> None:
    import asyncio

    from tests.fakes.openai_wire import stream_reply

    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow_upstream(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        arrived.set()
        await release.wait()
        for chunk in stream_reply(["hi"]).chunks or []:
            await resp.write(chunk)
        return resp

    app = aiohttp.web.Application()
    app.router.add_post("/v1/chat/completions", slow_upstream)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    config = deep_merge(
        {"providers": {"up": {"kind": "openai", "base_url": upstream_url, "api_key": "sk-test"}},
         "models": {"mock-gpt": {"provider": "up", "model": "m"}}},
        {"server": {"limits": {"max_concurrent_streams": 1}}})
    try:
        async with running_gateway(tmp_path, config=config) as gw:
            client = gw.openai("alice")

            async def first_stream() -> None:
                await _drain(await client.chat.completions.create(
                    model="mock-gpt", messages=HELLO, stream=True))

            first = asyncio.create_task(first_stream())
            await asyncio.wait_for(arrived.wait(), 10)  # the first stream holds the only slot
            with pytest.raises(openai.InternalServerError) as info:
                await client.chat.completions.create(model="mock-gpt", messages=HELLO, stream=True)
            release.set()
            await first
            events = await gw.audit_records()
    finally:
        await runner.cleanup()
    assert info.value.status_code == 503 and error_body(info.value)["code"] == "too_many_streams"
    assert "request.error" in [e["event"] for e in events]


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
