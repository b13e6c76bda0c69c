"""apply_obligations on real decisions, normalised requests and the real content inspector:
each obligation changes exactly what it names, in the documented order, and fails closed."""

from __future__ import annotations

from typing import Any

import pytest

from pep.content import ContentInspector, ContentSettings
from pep.obligations import apply_obligations
from pep.policy.contract import Decision
from pep.policy.engine import PolicyError
from pep.request import NormalizedRequest, normalize_chat, normalize_embeddings

MODELS = frozenset({"mock-gpt", "mock-gpt-eu"})
EMAIL = "mail alice@example.com now"


@pytest.fixture(scope="module")
def inspector() -> ContentInspector:
    return ContentInspector(ContentSettings())


def chat(**body: Any) -> NormalizedRequest:
    base: dict[str, Any] = {"model": "mock-gpt", "messages": [{"role": "user", "content": EMAIL}]}
    return normalize_chat({**base, **body}, normalise_text=lambda t: t)


def embed(inputs: Any) -> NormalizedRequest:
    return normalize_embeddings({"model": "mock-gpt", "input": inputs}, normalise_text=lambda t: t)


def decide(**obligations: Any) -> Decision:
    return Decision.model_validate({"allow": True, "obligations": obligations})


def apply(decision: Decision, req: NormalizedRequest, inspector: ContentInspector | None = None,
          types: set[str] | None = None) -> tuple[dict[str, Any], str, Any]:
    return apply_obligations(decision, req, configured_models=MODELS, redactor=inspector,
                             finding_types={"email"} if types is None else types)


def test_no_obligations_forward_the_body_unchanged_and_audit_the_prompt() -> None:
    req = chat(temperature=0.5)
    body, model, prompt = apply(decide(), req)
    assert body == req.body and body is not req.body
    assert model == "mock-gpt"
    assert prompt == req.body["messages"]


def test_the_callers_body_is_never_modified() -> None:
    req = chat(max_tokens=500)
    snapshot = dict(req.body)
    apply(decide(max_tokens=7, model="mock-gpt-eu", system_prompt="Be terse."), req)
    assert req.body == snapshot


def test_reroute_changes_the_model_of_the_body_and_the_route() -> None:
    body, model, _ = apply(decide(model="mock-gpt-eu"), chat())
    assert (body["model"], model) == ("mock-gpt-eu", "mock-gpt-eu")


def test_reroute_to_the_same_model_is_not_an_error_even_if_unlisted() -> None:
    req = normalize_chat({"model": "other", "messages": [{"role": "user", "content": "x"}]},
                         normalise_text=lambda t: t)
    body, model, _ = apply(decide(model="other"), req)
    assert (body["model"], model) == ("other", "other")


def test_reroute_to_an_unconfigured_model_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as info:
        apply(decide(model="gpt-9"), chat())
    assert info.value.code == "policy_invalid"
    assert "gpt-9" in str(info.value)


@pytest.mark.parametrize(("asked", "expected"), [
    ({"max_tokens": 500, "max_completion_tokens": 400}, {"max_tokens": 7, "max_completion_tokens": 7}),
    ({"max_completion_tokens": 400}, {"max_completion_tokens": 7}),
    ({"max_tokens": 500}, {"max_tokens": 7}),
    ({}, {"max_tokens": 7}),
    ({"max_tokens": 7}, {"max_tokens": 7}),
    ({"max_tokens": 3, "max_completion_tokens": 9}, {"max_tokens": 3, "max_completion_tokens": 7}),
    ({"max_tokens": None, "max_completion_tokens": 9}, {"max_tokens": None, "max_completion_tokens": 7}),
])
def test_the_cap_applies_to_every_token_field(asked: dict[str, Any], expected: dict[str, Any]) -> None:
    body, _, _ = apply(decide(max_tokens=7), chat(**asked))
    assert {k: body[k] for k in ("max_tokens", "max_completion_tokens") if k in body} == expected


def test_embeddings_get_no_token_cap_and_no_system_prompt() -> None:
    body, _, _ = apply(decide(max_tokens=7, system_prompt="Be terse."), embed("hello"))
    assert body == {"model": "mock-gpt", "input": "hello"}


def test_system_prompt_is_prepended_as_the_first_message() -> None:
    body, _, prompt = apply(decide(system_prompt="Be terse."), chat())
    assert body["messages"] == [{"role": "system", "content": "Be terse."},
                                {"role": "user", "content": EMAIL}]
    assert prompt == [{"role": "user", "content": EMAIL}]  # the audit sees the user's prompt


def test_empty_system_prompt_adds_nothing() -> None:
    body, _, _ = apply(decide(system_prompt=""), chat())
    assert len(body["messages"]) == 1


def test_redaction_masks_wanted_types_before_forwarding(inspector: ContentInspector) -> None:
    body, _, prompt = apply(decide(redact=["email"]), chat(), inspector)
    sent = body["messages"][0]["content"]
    assert "alice@example.com" not in sent and sent.startswith("mail ")
    assert prompt[0]["content"] == EMAIL  # default audit_content is digest of the original


def test_redaction_of_a_type_that_was_not_found_changes_nothing() -> None:
    # No finding of the type: no redactor needed, nothing changes (no error either).
    body, _, _ = apply(decide(redact=["phone"]), chat(), None)
    assert body["messages"][0]["content"] == EMAIL


def test_redaction_without_content_inspection_is_a_policy_error() -> None:
    with pytest.raises(PolicyError) as info:
        apply(decide(redact=["email"]), chat(), None)
    assert info.value.code == "policy_invalid"
    assert str(info.value) == "redact obligation but content inspection is off"


def test_audit_content_redacted_without_redaction_audits_the_prompt_as_sent() -> None:
    body, _, prompt = apply(decide(audit_content="redacted"), chat())
    assert prompt == body["messages"] == [{"role": "user", "content": EMAIL}]


def test_redaction_of_embedding_inputs(inspector: ContentInspector) -> None:
    body, _, _ = apply(decide(redact=["email"]), embed([EMAIL, "plain", 42]), inspector)
    assert "alice@example.com" not in body["input"][0]
    assert body["input"][1:] == ["plain", 42]
    single, _, _ = apply(decide(redact=["email"]), embed(EMAIL), inspector)
    assert isinstance(single["input"], str) and "alice@example.com" not in single["input"]


@pytest.mark.parametrize(("mode", "expect"), [
    ("none", None), ("digest", "original"), ("full", "original"), ("redacted", "redacted"),
    (None, "original"),
])
def test_audit_content_chooses_what_the_audit_sees(
    inspector: ContentInspector, mode: str | None, expect: str | None
) -> None:
    obligations: dict[str, Any] = {"redact": ["email"]}
    if mode is not None:
        obligations["audit_content"] = mode
    body, _, prompt = apply(decide(**obligations), chat(), inspector)
    if expect is None:
        assert prompt is None
    elif expect == "original":
        assert prompt == [{"role": "user", "content": EMAIL}]
    else:
        assert prompt == body["messages"] and "alice@example.com" not in str(prompt)


def test_all_obligations_together_apply_in_order(inspector: ContentInspector) -> None:
    body, model, _ = apply(decide(model="mock-gpt-eu", max_tokens=7, redact=["email"],
                                  system_prompt="Be terse."), chat(max_tokens=100), inspector)
    assert model == "mock-gpt-eu" and body["max_tokens"] == 7
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert "alice@example.com" not in body["messages"][1]["content"]


def test_an_mcp_only_obligation_on_a_model_call_fails_closed() -> None:
    with pytest.raises(PolicyError) as info:
        apply(decide(max_result_bytes=1024), chat())
    assert info.value.code == "obligation_not_applicable"
