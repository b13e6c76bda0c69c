"""Response caching end to end with the official SDKs (issue 15): a cached answer reaches only
the people the policy would have shown it to, is still audited and output-checked, and a new
policy revision or a denial is never answered from cache."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from idp.testing import running_idp
from pep import appkeys
from pep.audit.factory import store_url
from pep.defaults import repo_policies_dir
from tests.e2e.conftest import upstream_config
from tests.e2e.test_policy_e2e import decision_bundle
from tests.fakes.openai_wire import stream_reply
from tests.fakes.server import FakeServer
from tests.harness import deep_merge, running_gateway

HELLO: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


def _cache(scope: str = "user", **more: Any) -> str:
    return json.dumps({"mode": "exact", "scope": scope, "ttl_s": 60, "sampled": True, **more})


def cache_bundle(tmp_path: Path, scope: str = "user", *, allow: str = "true",
                 output_allow: str = "true", **more: Any) -> dict[str, Any]:
    """A policy that allows (per ``allow``), caches per ``scope`` and runs an output decision."""
    extra = f"""
default allowed := false
allowed if {{ {allow} }}
default output_ok := false
output_ok if {{ {output_allow} }}
request_decision := {{"allow": allowed, "obligations": {{"cache": {_cache(scope, **more)}}}}}
"""
    decision = '{"allow": output_ok} if { input.output } else := request_decision'
    config = decision_bundle(tmp_path, decision, extra)
    config["policy"]["output_decision"] = True
    return config


async def _chat(client: Any, **kw: Any) -> tuple[str, str, str]:
    resp = await client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=HELLO, temperature=0, **kw)
    body = resp.parse()
    return body.choices[0].message.content, resp.headers["x-regogate-cache"], \
        resp.headers["x-request-id"]


def _completions(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["request_id"]: e for e in events if e["event"] == "request.completion"}


async def test_a_repeat_is_a_hit_for_alice_and_a_miss_for_bob_under_the_default_policy(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        alice = gw.openai("alice")
        first = await _chat(alice)
        second = await _chat(alice)
        # bob in alice's groups: the policy forwards exactly the same request for him
        bobs = await _chat(gw.openai(token=gw.token("bob", claims={"groups": ["ml-team"]})))
        events = await gw.audit_records()
        async with aiohttp.ClientSession() as s, s.get(
                gw.url + "/usage/v1/counters?scope=user&window=day",
                headers={"Authorization": f"Bearer {gw.token('erin')}"}) as r:
            usage = {row["id"]: row for row in (await r.json())["data"]}
    # usage counts the hit like any answer: alice's two requests, 9 + 3 tokens each
    assert usage["alice"]["requests"] == 2 and usage["alice"]["tokens"] == 24
    assert [first[1], second[1], bobs[1]] == ["miss", "hit", "miss"]
    assert first[0] == second[0] == "Hello from the fake upstream."
    assert len(upstream.requests) == 2  # alice once, bob once
    assert upstream.requests[0].body == upstream.requests[1].body
    done = _completions(events)
    hit = done[second[2]]
    assert hit["who"]["subject"] == "alice"
    assert hit["extra"]["cache"]["hit"] is True
    assert hit["extra"]["cache"]["filled_by"] == first[2]
    assert hit["extra"]["cache"]["key_digest"] == done[first[2]]["extra"]["cache"]["key_digest"]
    assert hit["extra"]["cache"]["saved_cost_usd"] == hit["outcome"]["cost_usd"]
    assert hit["outcome"]["tokens_in"] == 9 and hit["outcome"]["tokens_out"] == 3
    intents = [e for e in events if e["event"] == "request.intent" and e["request_id"] == second[2]]
    assert intents and intents[0]["extra"]["cache"]["hit"] is True
    assert done[bobs[2]]["extra"]["cache"]["hit"] is False
    assert done[bobs[2]]["extra"]["cache"]["key_digest"] != hit["extra"]["cache"]["key_digest"]


async def test_a_streaming_repeat_is_served_from_cache_as_a_stream_in_each_dialect(
    tmp_path: Path,
) -> None:
    async with FakeServer(lambda rec: stream_reply(["Par", "is ", "it ", "is."])) as up:
        async with running_gateway(tmp_path, config=upstream_config(up)) as gw:
            client = gw.openai("alice")
            texts, states = [], []
            for _ in range(2):
                resp = await client.chat.completions.with_raw_response.create(
                    model="mock-gpt", messages=HELLO, stream=True,
                    stream_options={"include_usage": True})
                states.append(resp.headers["x-regogate-cache"])
                text, usage = "", None
                async for chunk in resp.parse():
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                    usage = chunk.usage or usage
                texts.append(text)
            claude = gw.anthropic("alice")
            async with claude.messages.stream(model="mock-gpt", max_tokens=64,
                                              messages=HELLO) as s:
                first = "".join([t async for t in s.text_stream])
            async with claude.messages.stream(model="mock-gpt", max_tokens=64,
                                              messages=HELLO) as s:
                again = "".join([t async for t in s.text_stream])
                final = await s.get_final_message()
            events = await gw.audit_records()
    assert states == ["miss", "hit"]
    assert texts == ["Paris it is.", "Paris it is."]
    assert usage is not None and usage.completion_tokens == 3
    assert first == again == "Paris it is." and final.stop_reason == "end_turn"
    assert len(up.requests) == 2  # one per dialect (the key includes the API)
    hits = [e for e in events if e["event"] == "request.completion"
            and e["extra"].get("cache", {}).get("hit")]
    assert len(hits) == 2 and all(h["what"]["stream"] for h in hits)


async def test_a_team_policy_shares_a_cached_answer_with_a_teammate_only(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), cache_bundle(tmp_path, "team"))
    async with running_gateway(tmp_path, config=config) as gw:
        filled = await _chat(gw.openai("alice"))
        teammate = await _chat(gw.openai(token=gw.token("bob", claims={"team": "research"})))
        outsider = await _chat(gw.openai("bob"))  # team sales
        events = await gw.audit_records()
    assert [filled[1], teammate[1], outsider[1]] == ["miss", "hit", "miss"]
    assert len(upstream.requests) == 2
    hit = _completions(events)[teammate[2]]
    assert hit["who"]["subject"] == "bob" and hit["extra"]["cache"]["filled_by"] == filled[2]


async def test_a_new_policy_revision_turns_hits_into_misses(
    tmp_path: Path, upstream: FakeServer
) -> None:
    bundle = tmp_path / "live"
    shutil.copytree(repo_policies_dir(), bundle)
    config = deep_merge(upstream_config(upstream),
                        {"policy": {"bundle": str(bundle), "hot_reload": False}})
    async with running_gateway(tmp_path, config=config) as gw:
        alice = gw.openai("alice")
        states = [(await _chat(alice))[1], (await _chat(alice))[1]]
        data = (bundle / "data.yaml").read_text()
        (bundle / "data.yaml").write_text(data.replace("default_max_tokens: 2048",
                                                       "default_max_tokens: 2047"))
        assert await gw.component(appkeys.POLICY).reload_if_changed()
        states += [(await _chat(alice))[1], (await _chat(alice))[1]]
    assert states == ["miss", "hit", "miss", "hit"]
    assert len(upstream.requests) == 2


async def test_a_request_the_policy_now_denies_is_denied_not_served_from_cache(
    tmp_path: Path, upstream: FakeServer
) -> None:
    # Same user, same request, same policy revision: only the token's groups differ.
    config = deep_merge(upstream_config(upstream),
                        cache_bundle(tmp_path, allow='not "blocked" in input.user.groups'))
    async with running_gateway(tmp_path, config=config) as gw:
        await _chat(gw.openai("alice"))
        blocked = gw.openai(token=gw.token("alice", claims={"groups": ["blocked"]}))
        with pytest.raises(openai.PermissionDeniedError) as info:
            await blocked.chat.completions.create(model="mock-gpt", messages=HELLO, temperature=0)
        events = await gw.audit_records()
    assert len(upstream.requests) == 1
    assert "x-regogate-cache" not in info.value.response.headers
    assert events[-1]["event"] == "policy.deny" and "cache" not in events[-1]["extra"]


async def test_a_hit_still_passes_the_output_decision(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), cache_bundle(
        tmp_path, output_allow='not "no-answers" in input.user.groups'))
    async with running_gateway(tmp_path, config=config) as gw:
        await _chat(gw.openai("alice"))
        muted = gw.openai(token=gw.token("alice", claims={"groups": ["no-answers"]}))
        with pytest.raises(openai.PermissionDeniedError) as info:
            await muted.chat.completions.create(model="mock-gpt", messages=HELLO, temperature=0)
        events = await gw.audit_records()
    assert len(upstream.requests) == 1  # the lookup hit, and the answer was withheld anyway
    body: Any = info.value.body
    assert body["phase"] == "output"
    assert "x-regogate-cache" not in info.value.response.headers
    deny = [e for e in events if e["event"] == "policy.deny"]
    assert deny and deny[0]["extra"]["cache"]["hit"] is True


async def test_client_no_cache_refreshes_no_store_skips_and_the_policy_can_forbid_both(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        alice = gw.openai("alice")
        fresh = await _chat(alice, extra_headers={"Cache-Control": "no-store"})
        missed = await _chat(alice)  # no-store kept nothing
        refreshed = await _chat(alice, extra_headers={"Cache-Control": "no-cache"})
        hit = await _chat(alice)
        events = await gw.audit_records()
    assert [fresh[1], missed[1], refreshed[1], hit[1]] == ["bypass", "miss", "bypass", "hit"]
    assert len(upstream.requests) == 3
    assert _completions(events)[hit[2]]["extra"]["cache"]["filled_by"] == refreshed[2]

    upstream.requests.clear()
    forced = deep_merge(upstream_config(upstream),
                        cache_bundle(tmp_path / "forced", client_control=False))
    async with running_gateway(tmp_path / "forced", config=forced) as gw:
        alice = gw.openai("alice")
        states = [(await _chat(alice))[1],
                  (await _chat(alice, extra_headers={"Cache-Control": "no-cache, no-store"}))[1]]
    assert states == ["miss", "hit"] and len(upstream.requests) == 1


async def test_the_policy_sees_the_clients_cache_control(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), cache_bundle(
        tmp_path, allow='not "no-store" in input.request.cache_control'))
    async with running_gateway(tmp_path, config=config) as gw:
        alice = gw.openai("alice")
        assert (await _chat(alice, extra_headers={"Cache-Control": "max-age=0"}))[1] == "miss"
        with pytest.raises(openai.PermissionDeniedError):
            await _chat(alice, extra_headers={"Cache-Control": "No-Store"})


async def test_sampled_requests_are_cached_only_when_the_policy_says_so(
    tmp_path: Path, upstream: FakeServer
) -> None:
    config = deep_merge(upstream_config(upstream), cache_bundle(tmp_path, sampled=False))
    async with running_gateway(tmp_path, config=config) as gw:
        alice = gw.openai("alice")
        states = []
        for temperature in (0.7, 0.7, None, 0, 0):
            kw = {} if temperature is None else {"temperature": temperature}
            resp = await alice.chat.completions.with_raw_response.create(
                model="mock-gpt", messages=HELLO, **kw)
            states.append(resp.headers["x-regogate-cache"])
    assert states == ["bypass", "bypass", "bypass", "miss", "hit"]
    assert len(upstream.requests) == 4


async def test_a_stream_cut_by_the_output_check_is_never_cached(tmp_path: Path) -> None:
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    words = ["Here: "] + [secret[i:i + 8] for i in range(0, len(secret), 8)]
    async with FakeServer(lambda rec: stream_reply(words)) as up:
        async with running_gateway(tmp_path, config=upstream_config(up)) as gw:
            client = gw.openai("alice")
            for _ in range(2):
                stream = await client.chat.completions.create(model="mock-gpt", messages=HELLO,
                                                              stream=True)
                finish = None
                with pytest.raises(openai.APIError, match="private_key"):  # cut in-band
                    async for chunk in stream:
                        if chunk.choices:
                            finish = chunk.choices[0].finish_reason or finish
                assert finish == "content_filter"
    assert len(up.requests) == 2


async def test_entries_survive_a_restart_in_sqlite_and_other_apis_are_cached_too(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_idp(tmp_path / "idp") as idp:
        await _restart_case(tmp_path, upstream, idp)


async def _restart_case(tmp_path: Path, upstream: FakeServer, idp: Any) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream), idp=idp) as gw:
        await _chat(gw.openai("alice"))
        client = gw.openai("alice")
        states = []
        for _ in range(2):
            r = await client.responses.with_raw_response.create(
                model="mock-gpt", input="Capital of France?", temperature=0, store=False)
            states.append(r.headers["x-regogate-cache"])
            assert r.parse().output_text == "Hello from the fake upstream."
        for _ in range(2):
            r = await client.completions.with_raw_response.create(
                model="mock-gpt", prompt="Capital of France?", temperature=0)
            states.append(r.headers["x-regogate-cache"])
    assert states == ["miss", "hit", "miss", "hit"]
    async with running_gateway(tmp_path, config=upstream_config(upstream), idp=idp) as gw:
        assert (await _chat(gw.openai("alice")))[1] == "hit"
    assert len(upstream.requests) == 3


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pep", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return int(proc.returncode or 0), (out + err).decode()


async def test_purging_a_user_reaches_the_running_gateway_and_metrics_and_report_show_the_cache(
    tmp_path: Path, upstream: FakeServer
) -> None:
    async with running_gateway(tmp_path, config=upstream_config(upstream)) as gw:
        data_dir = str(gw.settings.server.data_dir)
        alice, bob = gw.openai("alice"), gw.openai("bob")
        await _chat(alice)
        await _chat(bob)
        assert (await _chat(alice))[1] == "hit"
        await gw.component(appkeys.CACHE).store.flush()  # fills are written off the event loop
        code, out = await _cli("cache", "stats", "--data-dir", data_dir)
        assert code == 0 and json.loads(out)["entries"] == 2
        code, out = await _cli("cache", "purge", "--user", "alice", "--data-dir", data_dir)
        assert code == 0 and json.loads(out) == {"purged": 1}
        assert (await _chat(alice))[1] == "miss"  # gone from the gateway's LRU as well
        assert (await _chat(bob))[1] == "hit"
        async with aiohttp.ClientSession() as s, s.get(gw.url + "/metrics") as r:
            metrics = await r.text()
        audit_url = store_url(gw.settings.audit, gw.settings.server.data_dir)
    counters = {k: float(v) for k, v in (line.rsplit(" ", 1) for line in metrics.splitlines()
                                         if line and not line.startswith("#"))}
    assert counters['regogate_cache_lookups_total{result="hit"}'] == 2
    assert counters['regogate_cache_lookups_total{result="miss"}'] == 3
    assert counters["regogate_cache_fills_total"] == 3
    assert counters["regogate_cache_memory_bytes"] > 0
    assert counters["regogate_cache_memory_entries"] == 2
    code, out = await _cli("audit", "report", "--store", audit_url,
                           "--format", "json")
    assert code == 0, out
    rows = {r["user"]: r for r in json.loads(out)}
    assert rows["alice"]["cache_hits"] == 1 and rows["bob"]["cache_hits"] == 1
    assert rows["alice"]["saved_cost_usd"] > 0
    code, out = await _cli("cache", "purge", "--data-dir", data_dir)
    assert code == 2 and "--user" in out


# Embeddings the fake provider returns per text: a paraphrase close to the cached question
# (cosine 0.99), and a different question (cosine 0.6).
VECTORS = {"What is the capital of France?": [1.0, 0.0, 0.0],
           "Tell me the capital city of France.": [0.99, 0.141, 0.0],
           "What is the capital of Spain?": [0.6, 0.8, 0.0]}


def _semantic_upstream(rec: Any) -> Any:
    from tests.fakes.openai_wire import reply
    from tests.fakes.server import Reply

    if rec.path.endswith("/embeddings"):
        (text,) = json.loads(rec.body)["input"]
        return Reply(200, json.dumps({
            "object": "list", "model": "embed-upstream",
            "data": [{"object": "embedding", "index": 0, "embedding": VECTORS[text]}],
            "usage": {"prompt_tokens": 5, "total_tokens": 5}}).encode())
    return reply("Paris.")


async def test_semantic_mode_hits_a_paraphrase_above_the_threshold_and_misses_below(
    tmp_path: Path,
) -> None:
    async with FakeServer(_semantic_upstream) as up:
        config = deep_merge(deep_merge(upstream_config(up), cache_bundle(
            tmp_path, mode="semantic", min_similarity=0.95)),
            {"cache": {"semantic_embeddings_model": "mock-embed"}})
        async with running_gateway(tmp_path, config=config) as gw:
            alice, results = gw.openai("alice"), []
            bob = gw.openai(token=gw.token("bob", claims={"groups": ["ml-team"]}))
            for client, question in [(alice, q) for q in VECTORS] + [
                    (bob, "Tell me the capital city of France.")]:
                resp = await client.chat.completions.with_raw_response.create(
                    model="mock-gpt", temperature=0,
                    messages=[{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": question}])
                results.append((resp.headers["x-regogate-cache"], resp.headers["x-request-id"]))
            events = await gw.audit_records()
    # bob's paraphrase: another person's partition, whatever the similarity
    assert [r[0] for r in results] == ["miss", "hit", "miss", "miss"]
    chats = [r for r in up.requests if r.path.endswith("/chat/completions")]
    assert len(chats) == 3  # alice France, alice Spain, bob
    hit = _completions(events)[results[1][1]]["extra"]["cache"]
    assert hit["hit"] is True and hit["filled_by"] == results[0][1]
    assert 0.95 <= hit["similarity"] < 1.0


async def test_a_responses_stream_hit_has_the_same_event_types_as_the_original(
    tmp_path: Path,
) -> None:
    async with FakeServer(lambda rec: stream_reply(["Par", "is."])) as up:
        async with running_gateway(tmp_path, config=upstream_config(up)) as gw:
            client = gw.openai("alice")
            runs = []
            for _ in range(2):
                resp = await client.responses.with_raw_response.create(
                    model="mock-gpt", input="Capital of France?", temperature=0, stream=True)
                events = [e async for e in resp.parse()]
                types = [e.type for e in events]  # a replay sends the text as one delta
                runs.append((resp.headers["x-regogate-cache"],
                             [t for i, t in enumerate(types) if i == 0 or types[i - 1] != t],
                             "".join(e.delta for e in events
                                     if e.type == "response.output_text.delta")))
    (first, first_types, first_text), (again, again_types, again_text) = runs
    assert (first, again) == ("miss", "hit")
    assert first_types == again_types and first_types[-1] == "response.completed"
    assert first_text == again_text == "Paris."
    assert len(up.requests) == 1


async def test_a_cache_store_that_is_down_is_a_miss_never_an_error(
    tmp_path: Path, upstream: FakeServer
) -> None:
    from tests.audit.test_crash import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    config = deep_merge(upstream_config(upstream), {"cache": {"store": dead, "timeout_s": 0.5}})
    async with running_gateway(tmp_path, config=config) as gw:
        alice = gw.openai("alice")
        states = [(await _chat(alice))[1], (await _chat(alice))[1]]
        errors = gw.component(appkeys.METRICS).get("cache_store_errors_total")
    assert states == ["miss", "miss"] and len(upstream.requests) == 2
    assert errors == 4  # two lookups, two fills
