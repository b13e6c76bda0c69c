package regogate.cache_test

import rego.v1

import data.regogate.cache

alice := {"sub": "alice", "issuer": "https://idp.example.com", "team": "research"}

test_default_is_an_exact_per_user_cache_with_a_short_ttl if {
	ob := cache.obligation with input as {"user": alice, "client": {"id": "dev-cli"}, "content": {"types": []}}
	ob == {"mode": "exact", "scope": "user", "ttl_s": 300, "sampled": true}
}

test_a_support_bot_shares_entries_per_team_and_only_caches_deterministic_requests if {
	ob := cache.obligation with input as {"user": alice, "client": {"id": "support-bot"}, "content": {"types": []}}
		with data.gateway.cache.team_clients as ["support-bot"]
	ob.scope == "team"
	ob.sampled == false
}

test_a_team_client_without_a_team_falls_back_to_the_user if {
	ob := cache.obligation with input as {"user": {"sub": "bob"}, "client": {"id": "support-bot"}, "content": {"types": []}}
		with data.gateway.cache.team_clients as ["support-bot"]
	ob.scope == "user"
}

test_personal_data_in_the_prompt_turns_caching_off if {
	ob := cache.obligation with input as {"user": alice, "client": {}, "content": {"types": ["email"]}}
	ob == {"mode": "off"}
}

test_caching_disabled_in_data_gives_no_obligation if {
	not cache.obligation with input as {"user": alice, "client": {}, "content": {"types": []}}
		with data.gateway.cache.enabled as false
}

test_a_deployment_may_choose_the_semantic_mode_in_data if {
	ob := cache.obligation with input as {"user": alice, "client": {"id": "dev-cli"}, "content": {"types": []}}
		with data.gateway.cache.mode as "semantic"
	ob.mode == "semantic"
	ob.scope == "user"
}
