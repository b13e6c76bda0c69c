"""One validation step before policy, and audited (GUIDE.md 3.11, 3.12).

Every refusal below goes through the real gateway (raw HTTP where an SDK would not send the
input) and is checked for: status and OpenAI-style body, nothing forwarded upstream, exactly
one terminal audit record (``request.rejected`` with the reason code and sizes) and neither
the body nor the token in that record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from pep.audit.export import build_report, ocsf_event
from pep.audit.factory import store_url
from pep.audit.query import AuditQuery
from pep.audit.checkpoints import DEFAULT_PUBLIC_KEY_NAME, load_public_key
from pep.audit.reader import open_reader
from pep.audit.verify import verify_trail
from pep.steps import TERMINAL_EVENTS
from pep.validation import FORBIDDEN_KEYS
from tests.e2e.conftest import upstream_config
from tests.fakes.server import FakeServer
from tests.harness import Gateway, deep_merge, error_body, running_gateway

MSG = [{"role": "user", "content": "hello"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "mock-gpt", "messages": MSG, **extra}


async def post(gw: Gateway, path: str, body: bytes, *, token: str | None = "alice",
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    sent = {"Content-Type": "application/json"}
    if token:
        sent["Authorization"] = f"Bearer {gw.token(token)}"
    sent.update(headers or {})
    async with aiohttp.ClientSession() as s, s.post(gw.url + path, data=body, headers=sent) as r:
        return r.status, await r.json(), r.headers["x-request-id"]


async def trail_of(gw: Gateway, rid: str) -> list[dict[str, Any]]:
    return [e for e in await gw.audit_records() if e["request_id"] == rid]


def assert_one_rejection(events: list[dict[str, Any]], reason: str, *, subject: str | None,
                         secrets: tuple[bytes, ...] = ()) -> dict[str, Any]:
    assert [e["event"] for e in events] == ["request.rejected"], events
    (record,) = events
    assert record["extra"]["reason"] == reason
    assert record["outcome"]["error_code"] == reason
    assert record["who"].get("subject") == subject
    raw = repr(record).encode()
    for secret in secrets:
        assert secret not in raw
    return record


def _json(doc: Any) -> bytes:
    import orjson

    return orjson.dumps(doc)


CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    ("invalid json", "/v1/chat/completions", b'{"model": "mock-gpt", "messages": [', {}, 400,
     "invalid_json"),
    ("api_base", "/v1/chat/completions", _json(chat(api_base="http://169.254.169.254/")), {},
     400, "forbidden_parameter"),
    ("ssrf model", "/v1/chat/completions",
     _json({"model": "http://169.254.169.254/latest/meta-data/", "messages": MSG}), {}, 404,
     "model_not_found"),
    ("plain text", "/v1/chat/completions", b"hello", {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type"),
    ("bad structure", "/v1/chat/completions", _json({"model": "mock-gpt", "messages": "hi"}), {},
     400, "invalid_request"),
    ("embeddings headers", "/v1/embeddings",
     _json({"model": "mock-embed", "input": "x", "headers": {"x": "y"}}), {}, 400,
     "forbidden_parameter"),
    ("anthropic api_base", "/v1/messages",
     _json({"model": "mock-gpt", "max_tokens": 5, "messages": MSG, "api_base": "http://evil"}),
     {}, 400, "forbidden_parameter"),
    ("chat model on embeddings", "/v1/embeddings", _json({"model": "mock-gpt", "input": "x"}),
     {}, 400, "wrong_model_type"),
    ("responses organization", "/v1/responses",
     _json({"model": "mock-gpt", "input": "hi", "organization": "org-x"}), {}, 400,
     "forbidden_parameter"),
    ("responses ssrf model", "/v1/responses",
     _json({"model": "http://169.254.169.254/", "input": "hi"}), {}, 404, "model_not_found"),
    ("legacy completions headers", "/v1/completions",
     _json({"model": "mock-gpt", "prompt": "hi", "headers": {"x": "y"}}), {}, 400,
     "forbidden_parameter"),
    ("count_tokens aws_session_token", "/v1/messages/count_tokens",
     _json({"model": "mock-gpt", "messages": MSG, "aws_session_token": "t"}), {}, 400,
     "forbidden_parameter"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_a_refused_request_is_audited_once_and_nothing_is_forwarded(
    tmp_path: Path, upstream: FakeServer, case: tuple[str, str, bytes, dict[str, str], int, str]
) -> None:
    _, path, body, headers, status, code = case
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        got, doc, rid = await post(gw, path, body, headers=headers)
        events = await trail_of(gw, rid)
    assert got == status, doc
    assert doc["error"]["message"] and doc["error"]["type"] == "invalid_request_error"
    if not path.startswith("/v1/messages"):  # the Anthropic error shape has no code
        assert doc["error"]["code"] == code
    assert upstream.requests == []
    record = assert_one_rejection(events, code, subject="alice", secrets=(body,))
    assert record["outcome"]["status"] == status
    assert record["what"]["path"] == path
    assert record["extra"]["content_length"] == len(body)
    assert record["extra"].get("body_bytes") == (None if status == 415 else len(body))


async def test_every_forbidden_key_is_refused_before_policy_with_no_intent_record(
    tmp_path: Path, upstream: FakeServer
) -> None:
    # headers, organization and aws_session_token used to pass the first check, get a durable
    # intent record and fail later in the router as upstream.error.
    assert {"headers", "organization", "aws_session_token"} <= FORBIDDEN_KEYS
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        rids = {}
        for key in sorted(FORBIDDEN_KEYS):
            status, doc, rid = await post(gw, "/v1/chat/completions", _json(chat(**{key: "x"})))
            assert (status, doc["error"]["code"], doc["error"]["param"]) == (
                400, "forbidden_parameter", key)
            rids[rid] = key
        records = await gw.audit_records()
    assert upstream.requests == []
    assert [r["event"] for r in records] == ["request.rejected"] * len(FORBIDDEN_KEYS)
    assert {r["request_id"]: r["extra"]["param"] for r in records} == rids


async def test_the_openai_sdk_cannot_smuggle_a_forbidden_key_through_extra_body(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        with pytest.raises(openai.BadRequestError) as info:
            await gw.openai("alice").chat.completions.create(
                model="mock-gpt", messages=MSG, extra_body={"organization": "org-other"})
        records = await gw.audit_records()
    assert error_body(info.value)["code"] == "forbidden_parameter"
    assert upstream.requests == []
    assert [r["event"] for r in records] == ["request.rejected"]


async def test_a_body_over_the_limit_is_refused_by_content_length_and_audited_with_sizes(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream),
                        {"server": {"limits": {"max_body_bytes": 1024 * 1024}}})
    body = _json(chat(pad="x" * (2 * 1024 * 1024)))
    async with running_gateway(tmp_path, config=config) as gw:
        status, doc, rid = await post(gw, "/v1/chat/completions", body)
        events = await trail_of(gw, rid)
    assert status == 413 and doc["error"]["code"] == "payload_too_large"
    assert upstream.requests == []
    record = assert_one_rejection(events, "payload_too_large", subject="alice")
    assert record["extra"]["content_length"] == len(body)
    assert "body_bytes" not in record["extra"]  # refused before the body was read


async def test_an_unauthenticated_refusal_has_exactly_one_record_the_auth_failure(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        status, doc, rid = await post(gw, "/v1/chat/completions",
                                      _json(chat(api_base="http://evil")), token=None)
        events = await trail_of(gw, rid)
    assert status == 401
    assert [e["event"] for e in events] == ["auth.failure"]


async def test_unknown_endpoints_and_methods_are_audited_as_rejected(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw, aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/latest/meta-data/iam") as r:
            rid_404 = r.headers["x-request-id"]
            assert r.status == 404
        async with s.get(gw.url + "/v1/chat/completions") as r:
            rid_405 = r.headers["x-request-id"]
            assert r.status == 405
        records = {r["request_id"]: r for r in await gw.audit_records()}
    assert records[rid_404]["event"] == "request.rejected"
    assert records[rid_404]["extra"]["reason"] == "unknown_endpoint"
    assert records[rid_404]["what"]["path"] == "/latest/meta-data/iam"
    assert records[rid_405]["extra"]["reason"] == "method_not_allowed"


async def test_a_long_client_chosen_model_name_is_cut_in_the_record(tmp_path: Path) -> None:
    model = "http://169.254.169.254/" + "a" * 10_000
    async with running_gateway(tmp_path) as gw:
        status, _, rid = await post(gw, "/v1/chat/completions",
                                    _json({"model": model, "messages": MSG}))
        (record,) = await trail_of(gw, rid)
    assert status == 404
    assert record["what"]["model_requested"] == model[:256]
    assert len(record["outcome"]["error_message"]) <= 256


async def test_rejections_are_known_to_the_verifier_query_and_report(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=MSG)
        for _ in range(2):
            await post(gw, "/v1/chat/completions", _json(chat(url="http://evil")))
        reader = open_reader(store_url(gw.settings.audit, gw.settings.server.data_dir))
        try:
            # Every trail has a signed start checkpoint, so the verifier needs the public key.
            key = load_public_key(gw.settings.server.data_dir / DEFAULT_PUBLIC_KEY_NAME)
            report = await verify_trail(reader, public_keys=[key])
            rejected = [r async for r in reader.matching(AuditQuery(decision="rejected"))]
            rows = build_report([r async for r in reader.records()], by="user")
        finally:
            await reader.close()
    assert report.valid and report.records == 4
    assert [r.index["event"] for r in rejected] == ["request.rejected"] * 2
    ocsf = ocsf_event(rejected[0])
    assert (ocsf["status"], ocsf["severity_id"], ocsf["status_detail"]) == (
        "Failure", 3, "forbidden_parameter")
    (row,) = rows
    assert (row["requests"], row["allowed"], row["rejected"]) == (3, 1, 2)


def test_every_terminal_event_kind_is_part_of_the_audit_schema() -> None:
    from typing import get_args

    from pep.audit.events import EventType

    assert TERMINAL_EVENTS <= set(get_args(EventType))
    assert "request.rejected" in TERMINAL_EVENTS


@pytest.mark.parametrize(("client", "shape"), [("openai", "openai chat.completions"),
                                                ("anthropic", "anthropic messages")])
async def test_the_policy_sees_the_dialect_and_api_the_request_came_in(
        tmp_path: Path, client: str, shape: str) -> None:
    from tests.e2e.test_policy_e2e import decision_bundle

    # The policy refuses with what it was told, so the reason shows the validated request.
    config = decision_bundle(tmp_path, '{"allow": false, "reasons": [{"code": "shape", '
                                       '"message": concat(" ", [input.request.inbound_format, '
                                       'input.request.api])}]}')
    async with running_gateway(tmp_path, config=config) as gw:
        if client == "openai":
            with pytest.raises(openai.PermissionDeniedError) as oa:
                await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=MSG)
            body = error_body(oa.value)
        else:
            import anthropic

            with pytest.raises(anthropic.PermissionDeniedError) as an:
                await gw.anthropic("alice").messages.create(model="mock-gpt", max_tokens=8,
                                                            messages=MSG)
            body = error_body(an.value)["error"]
    assert shape in json.dumps(body), body


async def test_the_media_type_and_empty_body_refusals_say_what_was_wrong(tmp_path: Path) -> None:
    async with running_gateway(tmp_path) as gw:
        plain = await post(gw, "/v1/chat/completions", b"hello",
                           headers={"Content-Type": "text/plain"})
        # Twice: aiohttp's empty-body reader is one shared object whose reads change after
        # the first (pep.http.body must not count its answers as chunks).
        empties = [await post(gw, "/v1/chat/completions", b"") for _ in range(2)]
    assert plain[0] == 415 and plain[1]["error"]["message"] == (
        "Content-Type must be application/json, got 'text/plain'")
    for status, doc, _ in empties:
        assert status == 400 and doc["error"] == {
            "message": "request body is empty; a JSON object is required",
            "type": "invalid_request_error", "param": None, "code": "invalid_request"}
