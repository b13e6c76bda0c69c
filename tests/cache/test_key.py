"""The cache key partitions by identity and policy revision and ignores transport fields."""

from __future__ import annotations

from typing import Any

from pep.cache.key import cache_key, not_cacheable, scope_value
from pep.policy.contract import CacheObligation
from pep.principal import Principal

BODY = {"model": "mock-gpt", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}


def _principal(sub: str = "alice", **kw: Any) -> Principal:
    return Principal(sub=sub, issuer=kw.pop("issuer", "https://idp.example"), **kw)


def _key(**over: Any) -> str:
    args: dict[str, Any] = {"api": "chat.completions", "model": "mock-gpt",
                            "deployments": ("up/gpt-upstream",), "body": BODY,
                            "scope_value": "user\nhttps://idp.example\nalice", "revision": "sha256:a"}
    return cache_key(**{**args, **over})


def test_every_answer_changing_input_changes_the_key() -> None:
    base = _key()
    assert _key(revision="sha256:b") != base
    assert _key(scope_value="user\nhttps://idp.example\nbob") != base
    assert _key(model="mock-gpt-eu") != base
    assert _key(deployments=("other/gpt-upstream",)) != base
    assert _key(api="messages") != base
    assert _key(body={**BODY, "max_tokens": 5}) != base
    assert _key(body={**BODY, "messages": [{"role": "user", "content": "Hi!"}]}) != base
    assert _key(body={**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]}) != base


def test_a_stream_and_a_plain_request_share_a_key_and_key_order_does_not_matter() -> None:
    assert _key(body={**BODY, "stream": True, "stream_options": {"include_usage": True}}) == _key()
    assert _key(body=dict(reversed(list(BODY.items())))) == _key()


def test_scope_values_come_from_the_verified_identity() -> None:
    alice = _principal(teams=("research",), client_id="chat-ui")
    assert scope_value("user", alice) == "user\nhttps://idp.example\nalice"
    assert scope_value("team", alice) == "team\nhttps://idp.example\nresearch"
    assert scope_value("client", alice) == "client\nhttps://idp.example\nchat-ui"
    assert scope_value("org", alice) == "org\nhttps://idp.example"
    # the same sub at another issuer is another person
    assert scope_value("user", _principal(issuer="https://evil.example")) != scope_value("user", alice)
    assert scope_value("team", _principal()) is None
    assert scope_value("client", _principal()) is None


def test_sampling_needs_the_policy_to_allow_it_and_n_or_logprobs_are_never_cached() -> None:
    strict, lenient = CacheObligation(), CacheObligation(sampled=True)
    assert not_cacheable({"temperature": 0}, strict) is None
    assert not_cacheable({}, strict) == "sampled"
    assert not_cacheable({"temperature": 0.2}, strict) == "sampled"
    assert not_cacheable({"temperature": 0.2}, lenient) is None
    assert not_cacheable({"temperature": 0, "n": 2}, lenient) == "n"
    assert not_cacheable({"temperature": 0, "logprobs": True}, lenient) == "logprobs"
