"""Structured logs of a real `regogate serve` process (REGOGATE_LOG_FORMAT=json): every line
is one JSON object, each request has one access line with its request id, subject, decision,
status and timings, and nothing secret used in the run appears anywhere in the output."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from idp.testing import running_idp
from pep.defaults import embedded_mapping
from tests.audit.test_crash import env, free_port, wait_healthy
from tests.fakes.openai_wire import reply
from tests.fakes.server import FakeServer, Recorded, Reply
from tests.harness import deep_merge

HELLO: Any = [{"role": "user", "content": "Hello"}]
PROVIDER_KEY = "sk-test-provider-key-7f3a9c2e51d04b8a"


async def test_json_logs_carry_request_fields_and_never_a_secret(tmp_path: Path) -> None:
    def answer(_: Recorded) -> Reply:
        return reply("hi there")

    async with FakeServer(answer) as fake, running_idp(tmp_path / "idp") as idp:
        port = free_port()
        config = deep_merge(embedded_mapping(data_dir=tmp_path / "gw", issuer=idp.issuer,
                                             port=port), {
            "providers": {"up": {"kind": "openai", "base_url": fake.url + "/v1",
                                 "api_key": "${RG_TEST_PROVIDER_KEY}"}},
            "models": {"mock-gpt": {"provider": "up", "model": "gpt-upstream"}},
        })
        path = tmp_path / "regogate.yaml"
        path.write_text(yaml.safe_dump(config))
        log = tmp_path / "gateway.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "pep", "serve", "--config", str(path)],
            env={**env(), "REGOGATE_LOG_FORMAT": "json", "REGOGATE_LOG_LEVEL": "DEBUG",
                 "RG_TEST_PROVIDER_KEY": PROVIDER_KEY},
            stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        url = f"http://127.0.0.1:{port}"
        try:
            await asyncio.to_thread(wait_healthy, url, proc, log)
            alice_token, bob_token = idp.token("alice"), idp.token("bob")
            alice = openai.AsyncOpenAI(base_url=url + "/v1", api_key=alice_token, max_retries=0)
            ok = await alice.chat.completions.create(model="mock-gpt", messages=HELLO)
            with pytest.raises(openai.PermissionDeniedError):
                await openai.AsyncOpenAI(base_url=url + "/v1", api_key=bob_token,
                                         max_retries=0).chat.completions.create(
                    model="mock-gpt-admin", messages=HELLO)
            forged = alice_token[:-8] + "AAAAAAAA"
            with pytest.raises(openai.AuthenticationError):
                await openai.AsyncOpenAI(base_url=url + "/v1", api_key=forged,
                                         max_retries=0).chat.completions.create(
                    model="mock-gpt", messages=HELLO)
            await alice.close()
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    text = log.read_text()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = [ln for ln in lines if ln["logger"] == "regogate.access"]
    by_status = {ln["status"]: ln for ln in access}
    allowed = by_status[200]
    assert allowed["request_id"] == ok._request_id
    assert allowed["subject"] == "alice" and allowed["decision"] == "allow"
    assert allowed["model"] == "mock-gpt" and allowed["api"] == "chat.completions"
    assert allowed["latency_ms"] > 0 and allowed["policy_ms"] >= 0 and allowed["upstream_ms"] > 0
    denied = by_status[403]
    assert denied["subject"] == "bob" and denied["decision"] == "deny" and denied["reasons"]
    assert by_status[401]["subject"] is None
    for secret in (alice_token, bob_token, forged, PROVIDER_KEY,
                   alice_token.split(".")[2], forged.split(".")[2]):
        assert secret not in text
