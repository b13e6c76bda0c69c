"""Issue 4 at the gateway: obligations enforced, content rules, output decision, hot reload,
and every way the policy can fail closed (503, nothing forwarded, audited)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from pep.defaults import repo_policies_dir
from tests.e2e.conftest import upstream_config, write_bundle
from tests.e2e.test_content_edges_e2e import trail_until_completion
from tests.fakes.openai_wire import reply, stream_reply
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, error_body, running_gateway
from tests.opa_double import OpaDouble, require_oracle
from tests.policy.conftest import build_bundle

HELLO = [{"role": "user", "content": "Hello"}]


def decision_bundle(tmp_path: Path, decision: str, extra: str = "") -> dict[str, Any]:
    rego = f"package regogate\n\nimport rego.v1\n\n{extra}\ndecision := {decision}\n"
    return {"policy": {"bundle": str(write_bundle(tmp_path / "bundle", rego))}}


def sent_json(server: FakeServer) -> dict[str, Any]:
    (rec,) = server.requests
    body: dict[str, Any] = json.loads(rec.body)
    return body


FAIL_CLOSED = [
    ("unknown obligation", '{"allow": true, "obligations": {"watermark": true}}',
     "unknown_obligation"),
    ("ill-typed decision", '{"allow": "yes"}', "policy_invalid"),
    ("decision not an object", '"allow"', "policy_invalid"),
    ("undefined decision", 'x if { false }', "policy_undefined"),
    ("evaluation error", '{"allow": true, "n": 1 / count(input.user.groups)}', None),
    ("reroute to an unconfigured model", '{"allow": true, "obligations": {"model": "gpt-9"}}',
     "policy_invalid"),
    ("quota limit on a counter the request does not add to",
     '{"allow": true, "obligations": {"quota": [{"scope": "user", "key": "alice", '
     '"window": "day", "metric": "requests", "limit": 5, "code": "q"}]}}', "policy_invalid"),
    ("ill-typed quota limit",
     '{"allow": true, "obligations": {"quota": [{"scope": "user", "key": "bob", '
     '"window": "fortnight", "metric": "requests", "limit": 5, "code": "q"}]}}', "policy_invalid"),
]


@pytest.mark.parametrize("engine", ["embedded", "opa"])
@pytest.mark.parametrize("case", FAIL_CLOSED, ids=[c[0] for c in FAIL_CLOSED])
async def test_a_policy_that_cannot_decide_gives_503_forwards_nothing_and_is_audited(
    tmp_path: Path, upstream: FakeServer, case: tuple[str, str, str | None], engine: str
) -> None:
    name, decision, cause = case
    config: dict[str, Any]
    if name == "undefined decision":
        config = {"policy": {"bundle": str(write_bundle(
            tmp_path / "bundle", "package regogate\n\nimport rego.v1\n\ndecision := 1 if false\n"))}}
    elif name == "evaluation error":
        # bob has one group: 1 / 0. regorus raises; OPA's strict mode (the oracle) raises; a
        # real `opa run` makes it undefined -- a 503 all three ways.
        config = decision_bundle(tmp_path, '{"allow": true, "n": 1 / (count(input.user.groups) - 1)}')
    else:
        config = decision_bundle(tmp_path, decision)
    sidecar: OpaDouble | None = None
    if engine == "opa":  # the same bundle, built and served by OPA's REST API with OPA deciding
        require_oracle()
        sidecar = OpaDouble(build_bundle(Path(config["policy"]["bundle"]), tmp_path / "built"))
        config = {"policy": {"engine": "opa", "opa_url": await sidecar.start(), "timeout_s": 2.0}}
    try:
        async with running_gateway(tmp_path, config=deep_merge(upstream_config(upstream), config)) as gw:
            with pytest.raises(openai.InternalServerError) as info:
                await gw.openai("bob").chat.completions.create(model="mock-gpt", messages=HELLO)
            events = await gw.audit_records()
    finally:
        if sidecar is not None:
            await sidecar.stop()
    assert info.value.status_code == 503
    assert error_body(info.value)["code"] == "policy_unavailable"
    if cause:
        assert error_body(info.value)["cause"] == cause
    assert upstream.requests == []
    assert [e["event"] for e in events] == ["policy.error"]


async def test_opa_timeout_gives_503_and_forwards_nothing(
    tmp_path: Path, upstream: FakeServer
) -> None:
    require_oracle()
    double = OpaDouble(repo_policies_dir())
    url = await double.start()
    double.delay_s = 2.0
    try:
        config = {"policy": {"engine": "opa", "opa_url": url, "timeout_s": 0.2}}
        async with running_gateway(tmp_path, config=deep_merge(upstream_config(upstream), config)) as gw:
            with pytest.raises(openai.InternalServerError) as info:
                await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
            events = await gw.audit_records()
    finally:
        await double.stop()
    assert info.value.status_code == 503 and error_body(info.value)["code"] == "policy_unavailable"
    assert upstream.requests == []
    assert [e["event"] for e in events] == ["policy.error"]


async def test_reroute_cap_and_system_prompt_obligations_are_enforced_upstream(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = decision_bundle(tmp_path, '{"allow": true, "obligations": {"model": "mock-gpt-eu", '
                             '"max_tokens": 7, "system_prompt": "Be terse."}}')
    async with running_gateway(tmp_path, config=deep_merge(upstream_config(upstream), config)) as gw:
        resp = await gw.openai("alice").chat.completions.with_raw_response.create(
            model="mock-gpt", messages=HELLO, max_tokens=500)
        rid = resp.headers["x-request-id"]
        events = [e for e in await gw.audit_records() if e["request_id"] == rid]
    body = sent_json(upstream)
    assert body["model"] == "gpt-upstream-eu"
    assert body["max_tokens"] == 7
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert events[0]["what"]["model_requested"] == "mock-gpt"
    assert events[0]["what"]["model_served"] == "mock-gpt-eu"


async def test_pii_is_masked_before_the_provider_sees_it_and_audit_keeps_only_a_digest(
    tmp_path: Path, upstream: FakeServer
) -> None:
    prompt = "Mail jane.doe@example.com or call +1 415 555 0100 about card 4111 1111 1111 1111"
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": prompt}])
        events = await gw.audit_records()
    forwarded = sent_json(upstream)["messages"][-1]["content"]
    assert "jane.doe@example.com" not in forwarded and "4111 1111 1111 1111" not in forwarded
    assert "[REDACTED:EMAIL]" in forwarded
    intent = events[0]
    assert intent["content"]["mode"] == "digest"
    assert intent["content"]["prompt_sha256"] and intent["content"].get("prompt") is None
    assert "jane.doe" not in json.dumps(events)


async def test_audit_content_redacted_stores_the_masked_prompt(
    tmp_path: Path, upstream: FakeServer
) -> None:
    bundle = tmp_path / "lib"
    shutil.copytree(repo_policies_dir(), bundle)
    data = (bundle / "data.yaml").read_text().replace("default: digest", "default: redacted")
    (bundle / "data.yaml").write_text(data)
    config = deep_merge(upstream_config(upstream), {"policy": {"bundle": str(bundle)}})
    async with running_gateway(tmp_path, config=config) as gw:
        await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "I am jane.doe@example.com"}])
        events = await gw.audit_records()
    stored = json.dumps(events[0]["content"]["prompt"])
    assert events[0]["content"]["mode"] == "redacted"
    assert "[REDACTED:EMAIL]" in stored and "jane.doe@example.com" not in stored


async def test_a_private_key_in_the_prompt_is_denied_and_never_forwarded(
    tmp_path: Path, upstream: FakeServer
) -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----"
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await gw.openai("carol").chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": f"fix this {key}"}])
    assert info.value.status_code == 403
    assert upstream.requests == []


async def test_contractors_may_not_send_personal_data_outside_the_eu(tmp_path: Path) -> None:
    pii = [{"role": "user", "content": "Customer is jane.doe@example.com"}]
    async with running_gateway(tmp_path) as gw:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await gw.openai("bob").chat.completions.create(model="mock-gpt", messages=pii)
        eu = await gw.openai("bob").chat.completions.create(model="mock-gpt-eu", messages=pii)
        alice = await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=pii)
    assert error_body(info.value)["code"] == "personal_data_outside_eu"
    assert eu.choices[0].message.content and alice.choices[0].message.content


SECRET_ANSWER = "Sure: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"


async def test_output_decision_withholds_a_plain_answer_containing_a_private_key(
    tmp_path: Path,
) -> None:
    async with FakeServer(lambda rec: reply(SECRET_ANSWER)) as up:
        async with running_gateway(tmp_path, config=upstream_config(up)) as gw:
            with pytest.raises(openai.PermissionDeniedError) as info:
                await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
            events = await gw.audit_records()
    assert error_body(info.value)["phase"] == "output"
    assert "BEGIN OPENSSH" not in json.dumps(info.value.body)
    assert events[-1]["event"] == "policy.deny"


async def test_output_decision_redacts_pii_in_a_plain_answer(tmp_path: Path) -> None:
    async with FakeServer(lambda rec: reply("Write to bob.smith@example.org today.")) as up:
        async with running_gateway(tmp_path, config=upstream_config(up)) as gw:
            out = await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
    text = out.choices[0].message.content
    assert "bob.smith@example.org" not in text and "[REDACTED:EMAIL]" in text


async def test_output_decision_cuts_a_stream_that_starts_leaking_a_private_key(
    tmp_path: Path,
) -> None:
    words = ["Here ", "is ", "the ", "key: "] + [SECRET_ANSWER[i:i + 8] for i in range(0, len(SECRET_ANSWER), 8)]
    async with FakeServer(lambda rec: stream_reply(words)) as up:
        config = deep_merge(upstream_config(up), {"policy": {"output_check_every_chars": 8}})
        async with running_gateway(tmp_path, config=config) as gw:
            stream = await gw.openai("alice").chat.completions.create(
                model="mock-gpt", messages=HELLO, stream=True)
            text, finish = "", None
            with pytest.raises(openai.APIError, match="private_key"):
                async for chunk in stream:
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                        finish = chunk.choices[0].finish_reason or finish
            events = await trail_until_completion(gw)
    assert finish == "content_filter"
    # Held back until checked: none of the key material reached the client (the header
    # line, which is no secret, may have), and the audit says exactly what was delivered.
    assert "b3Blbn" not in text and "END OPENSSH" not in text
    assert events[-1]["extra"]["delivered_chars"] == len(text)
    assert events[-1]["extra"]["delivered_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert events[-1]["event"] == "request.completion"
    assert events[-1]["extra"]["output_cut"]


async def test_a_policy_edit_takes_effect_without_restart_and_a_broken_edit_keeps_the_old(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "live"
    shutil.copytree(repo_policies_dir(), bundle)
    config = {"policy": {"bundle": str(bundle), "reload_interval_s": 0.1}}
    async with running_gateway(tmp_path, config=config) as gw:
        client = gw.openai("bob")
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="mock-gpt-admin", messages=HELLO)
        data = (bundle / "data.yaml").read_text()
        (bundle / "data.yaml").write_text(data.replace("groups: [admins]\n      region: us",
                                                       "groups: [admins, contractors]\n      region: us", 1))
        await _until(lambda: _allowed(client, "mock-gpt-admin"))
        (bundle / "main.rego").write_text("package regogate\n\nthis is not rego {{{\n")
        await _until(lambda: _reload_error(gw))
        # the last good policy keeps serving
        ok = await client.chat.completions.create(model="mock-gpt-admin", messages=HELLO)
        assert ok.choices[0].message.content
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    counters = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if " " in line)
    assert int(counters["regogate_policy_reloads_total"]) >= 1
    assert int(counters["regogate_policy_reload_errors_total"]) >= 1


async def _allowed(client: Any, model: str) -> bool:
    try:
        await client.chat.completions.create(model=model, messages=HELLO)
        return True
    except openai.PermissionDeniedError:
        return False


async def _reload_error(gw: Any) -> bool:
    async with aiohttp.ClientSession() as s, s.get(gw.url + "/readyz") as r:
        doc = await r.json()
    return bool(doc["checks"]["policy"].get("last_reload_error"))


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_a_shadow_policy_is_never_enforced_but_its_divergences_are_audited(
    tmp_path: Path,
) -> None:
    candidate = tmp_path / "candidate"
    shutil.copytree(repo_policies_dir(), candidate)
    # The candidate would stop contractors from using mock-gpt altogether.
    data = (candidate / "data.yaml").read_text()
    (candidate / "data.yaml").write_text(
        data.replace("mock-gpt:\n      kind: chat\n      groups: [\"*\"]",
                     "mock-gpt:\n      kind: chat\n      groups: [ml-team, admins]", 1))
    config = {"policy": {"shadow": {"bundle": str(candidate)}}}
    async with running_gateway(tmp_path, config=config) as gw:
        served = await gw.openai("bob").chat.completions.create(model="mock-gpt", messages=HELLO)
        same = await gw.openai("alice").chat.completions.create(model="mock-gpt", messages=HELLO)
        events = await gw.audit_records()
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
    assert served.choices[0].message.content and same.choices[0].message.content
    divergences = [e for e in events if e["event"] == "shadow.divergence"]
    assert [d["who"]["subject"] for d in divergences] == ["bob"]
    shadow = divergences[0]["extra"]["shadow"]
    assert shadow["enforced"]["allow"] is True and shadow["candidate"]["allow"] is False
    assert "regogate_shadow_divergences_total 1" in metrics


async def test_a_huge_prompt_full_of_pii_is_scanned_and_every_item_masked(
    tmp_path: Path, upstream: FakeServer
) -> None:
    """3,000 pasted e-mail addresses (~57k characters, so scanned off the event loop): every
    one is masked before the provider sees the prompt."""
    prompt = " ".join(f"user{i}@example.com" for i in range(3000))
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        await gw.openai("alice").chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": prompt}])
    forwarded = sent_json(upstream)["messages"][-1]["content"]
    assert "@example.com" not in forwarded
    assert forwarded.count("[REDACTED:EMAIL]") == 3000
