package regogate.access_test

import rego.v1

import data.regogate.access

alice := {"sub": "alice", "groups": ["ml-team"], "teams": ["research"]}

bob := {"sub": "bob", "groups": ["contractors"], "teams": ["sales"]}

carol := {"sub": "carol", "groups": ["admins"], "teams": ["platform"]}

erin := {"sub": "erin", "groups": ["auditors"], "teams": ["compliance"]}

req(user, api, m) := {"user": user, "request": {"api": api, "model": m}}

codes(user, api, m) := {r.code | some r in access.deny with input as req(user, api, m)}

test_everyone_may_use_mock_gpt if {
	codes(alice, "chat.completions", "mock-gpt") == set()
	codes(bob, "chat.completions", "mock-gpt") == set()
}

test_contractor_may_not_use_admin_model if {
	codes(bob, "chat.completions", "mock-gpt-admin") == {"model_not_allowed"}
}

test_admin_may_use_admin_model if codes(carol, "chat.completions", "mock-gpt-admin") == set()

test_team_grant_allows_model if {
	grants := {"m": {"kind": "chat", "groups": [], "teams": ["research"]}}
	count(access.deny) == 0 with input as req(alice, "chat.completions", "m")
		with data.gateway.models as grants
}

test_unknown_model_is_refused if codes(alice, "chat.completions", "nope") == {"model_unknown"}

test_admin_override_covers_unknown_model if codes(carol, "chat.completions", "nope") == set()

test_embeddings_model_for_everyone if codes(bob, "embeddings", "mock-embed") == set()

test_chat_model_cannot_embed if codes(alice, "embeddings", "mock-gpt") == {"model_wrong_api"}

test_embeddings_model_cannot_chat if codes(alice, "chat.completions", "mock-embed") == {"model_wrong_api"}

test_models_list_is_per_model if {
	codes(bob, "models.list", "mock-gpt") == set()
	codes(bob, "models.list", "mock-gpt-admin") == {"model_not_allowed"}
}

test_only_auditors_read_audit if {
	codes(erin, "audit.read", "") == set()
	codes(carol, "audit.read", "") == {"api_not_allowed"}
	codes(alice, "audit.read", "") == {"api_not_allowed"}
}

test_auditors_and_admins_read_usage if {
	codes(erin, "usage.read", "") == set()
	codes(carol, "usage.read", "") == set()
	codes(bob, "usage.read", "") == {"api_not_allowed"}
}

test_only_admins_administer_the_cache if {
	codes(carol, "cache.admin", "") == set()
	codes(erin, "cache.admin", "") == {"api_not_allowed"}
	codes(alice, "cache.admin", "") == {"api_not_allowed"}
}

test_unknown_api_is_refused if codes(alice, "files.upload", "mock-gpt") == {"api_unknown"}

test_cap_comes_from_model if access.max_tokens == 8192 with input as req(carol, "chat.completions", "mock-gpt-admin")

test_cap_defaults_for_unknown_model if access.max_tokens == 2048 with input as req(carol, "chat.completions", "nope")

test_no_cap_for_models_list if not access.max_tokens with input as req(alice, "models.list", "mock-gpt")

test_request_without_model_is_refused if {
	{r.code | some r in access.deny} == {"model_unknown"} with input as {"user": alice, "request": {"api": "chat.completions"}}
}

# The Responses API, legacy completions and count_tokens follow the chat rules.
test_responses_and_completions_follow_chat_access if {
	codes(alice, "responses", "mock-gpt") == set()
	codes(alice, "completions", "mock-gpt") == set()
	codes(bob, "responses", "mock-gpt-admin") == {"model_not_allowed"}
	codes(bob, "completions", "mock-gpt-admin") == {"model_not_allowed"}
	codes(alice, "responses", "mock-embed") == {"model_wrong_api"}
	codes(alice, "responses", "nope") == {"model_unknown"}
}

test_count_tokens_checks_model_access if {
	codes(alice, "messages.count_tokens", "mock-gpt") == set()
	codes(bob, "messages.count_tokens", "mock-gpt-admin") == {"model_not_allowed"}
}

test_stored_responses_are_readable_by_their_owner_api if {
	codes(bob, "responses.read", "") == set()
	codes(bob, "responses.delete", "") == set()
}

test_responses_get_the_model_cap if access.max_tokens == 8192 with input as req(carol, "responses", "mock-gpt-admin")
