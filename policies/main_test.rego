package regogate_test

import rego.v1

import data.regogate

alice := {"sub": "alice", "groups": ["ml-team"], "teams": ["research"]}

bob := {"sub": "bob", "groups": ["contractors"], "teams": ["sales"]}

carol := {"sub": "carol", "groups": ["admins"], "teams": ["platform"]}

chat(user, m, types) := {
	"version": "v1",
	"user": user,
	"request": {"api": "chat.completions", "model": m, "max_tokens": 100000},
	"content": {"types": types},
	"usage": {},
}

test_default_is_deny if not regogate.allow with input as {}

test_alice_chat_is_allowed_with_cap_and_digest if {
	d := regogate.decision with input as chat(alice, "mock-gpt", [])
	d.allow
	d.reasons == []
	object.remove(d.obligations, ["quota"]) == {"max_tokens": 4096, "audit_content": "digest", "cache": {"mode": "exact", "scope": "user", "ttl_s": 300, "sampled": true}}

	# alice's team has a monthly budget (policies/quota/limits/data.yaml)
	{l.code | some l in d.obligations.quota} == {"quota_cost_usd_per_month", "quota_team_share"}
}

test_personal_data_turns_the_cache_off_while_redacting if {
	d := regogate.decision with input as chat(alice, "mock-gpt", ["email"])
	d.obligations.cache == {"mode": "off"}
}

test_bob_admin_model_is_denied_with_reason_code if {
	d := regogate.decision with input as chat(bob, "mock-gpt-admin", [])
	not d.allow
	[r.code | some r in d.reasons] == ["model_not_allowed"]
}

test_pii_is_redacted_by_default if {
	d := regogate.decision with input as chat(alice, "mock-gpt", ["phone", "email"])
	d.allow
	d.obligations.redact == ["email", "phone"]
}

test_secret_is_denied_even_for_admins if {
	d := regogate.decision with input as chat(carol, "mock-gpt", ["private_key"])
	not d.allow
	[r.code | some r in d.reasons] == ["secret_in_prompt"]
}

test_contractor_gets_system_prompt if {
	d := regogate.decision with input as chat(bob, "mock-gpt-eu", [])
	contains(d.obligations.system_prompt, "contractor")
}

test_contractor_personal_data_outside_eu_is_denied if {
	d := regogate.decision with input as chat(bob, "mock-gpt", ["email"])
	not d.allow
	[r.code | some r in d.reasons] == ["personal_data_outside_eu"]
}

test_quota_denial_is_combined if {
	q := {"code": "quota_exceeded", "message": "over", "quota": {"scope": "user", "window": "day", "metric": "tokens"}}
	d := regogate.decision with input as chat(alice, "mock-gpt", []) with data.regogate.quota.deny as {q}
	not d.allow
	d.reasons == [q]
}

test_smallest_cap_wins if {
	d := regogate.decision with input as chat(alice, "mock-gpt", []) with data.regogate.quota.max_tokens as 10
	d.obligations.max_tokens == 10
}

test_reroute_obligation_from_catalog if {
	models := {"old": {"kind": "chat", "groups": ["*"], "reroute_to": "mock-gpt"}}
	d := regogate.decision with input as chat(alice, "old", []) with data.gateway.models as models
	d.obligations.model == "mock-gpt"
}

test_models_list_has_no_content_obligations if {
	inp := {"user": bob, "request": {"api": "models.list", "model": "mock-gpt"}, "content": {"types": ["email"]}}
	d := regogate.decision with input as inp
	d.allow
	d.obligations == {"audit_content": "digest"}
}

test_output_redacts_answer_pii if {
	inp := object.union(chat(alice, "mock-gpt", []), {"output": {"text": "x", "types": ["email"], "final": true}})
	d := regogate.decision with input as inp
	d.allow
	d.obligations.redact == ["email"]
}

test_output_private_key_cuts_answer if {
	inp := object.union(chat(alice, "mock-gpt", []), {"output": {"text": "x", "types": ["private_key"], "final": false}})
	d := regogate.decision with input as inp
	not d.allow
	[r.code | some r in d.reasons] == ["secret_in_output"]
}

test_shipped_data_has_no_config_errors if count(regogate.config_errors) == 0

test_broken_quota_limit_is_a_config_error if {
	limits := {"everyone": [{"name": "typo", "scope": "user", "metric": "tokens", "window": "week", "max": 1}]}
	regogate.config_errors == {`quota: everyone[0] "typo"`} with data.quota.limits as limits
}

test_quota_limits_in_effect_become_the_quota_obligation if {
	l := {"scope": "user", "key": "alice", "metric": "requests", "window": "day", "limit": 3, "code": "q", "name": "n", "shrink": true}
	d := regogate.decision with input as chat(alice, "mock-gpt", []) with data.regogate.quota.obligation as [l]
	d.obligations.quota == [l]
}

test_listing_models_carries_no_quota_obligation if {
	l := {"scope": "user", "key": "bob", "metric": "requests", "window": "day", "limit": 3, "code": "q", "name": "n", "shrink": true}
	inp := {"user": bob, "request": {"api": "models.list", "model": "mock-gpt"}, "content": {"types": []}}
	d := regogate.decision with input as inp with data.regogate.quota.obligation as [l]
	not d.obligations.quota
}

test_responses_get_the_same_obligations_as_chat if {
	d := regogate.decision with input as object.union(chat(alice, "mock-gpt", ["email"]), {"request": {"api": "responses", "model": "mock-gpt"}})
	d.allow
	d.obligations.max_tokens == 4096
	d.obligations.redact == ["email"]
}

test_count_tokens_is_not_a_generation if {
	d := regogate.decision with input as object.union(chat(alice, "mock-gpt", ["private_key"]), {"request": {"api": "messages.count_tokens", "model": "mock-gpt"}})
	d.allow
	not d.obligations.max_tokens
}

mcp_call(user, tool, types) := {
	"user": user,
	"request": {"api": "mcp", "model": "", "mcp": {"server": "demo", "method": "tools/call", "tool": tool, "arguments": {"text": "x"}}},
	"content": {"types": types},
	"usage": {"user_tool": {"day": {"requests": 0}}},
}

test_mcp_call_obligations if {
	d := regogate.decision with input as mcp_call(alice, "echo", ["email"])
	d.allow
	d.obligations.redact == ["email"]
	d.obligations.max_result_bytes == 1048576
	[q.key | some q in d.obligations.quota] == ["alice demo/echo"]
	not d.obligations.max_tokens
	not d.obligations.system_prompt
	not d.obligations.cache
}

test_mcp_admin_tool_refused_for_non_admins if {
	d := regogate.decision with input as mcp_call(alice, "admin_report", [])
	not d.allow
	[r.code | some r in d.reasons] == ["tool_not_allowed"]
	e := regogate.decision with input as mcp_call(carol, "admin_report", [])
	e.allow
}

test_mcp_secret_in_arguments_denied if {
	d := regogate.decision with input as mcp_call(alice, "echo", ["api_key"])
	[r.code | some r in d.reasons] == ["secret_in_arguments"]
}

test_mcp_is_not_a_model_call if {
	# No model, no content or residency rules for the prompt: the MCP module decides.
	d := regogate.decision with input as mcp_call(bob, "echo", [])
	d.allow
}
