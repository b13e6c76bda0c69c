package regogate.quota_test

import rego.v1

import data.regogate.quota

# Callers ------------------------------------------------------------------------------

contractor := {"sub": "carol", "kind": "user", "groups": ["contractors"], "teams": ["research"]}

researcher := {"sub": "rita", "kind": "user", "groups": ["staff"], "teams": ["research"]}

outsider := {"sub": "olga", "kind": "user", "groups": ["staff"], "teams": []}

req(n) := {"estimated_tokens": n}

day_tokens(n) := {"user": {"day": {"tokens": n}}}

codes(reasons) := {r.code | some r in reasons}

# Rules used by the precedence tests, independent of the shipped data.
precedence_rules := [
	{"name": "contractors", "who": {"group": "contractors"}, "scope": "user", "metric": "tokens", "window": "day", "max": 1000},
	{"name": "carol override", "who": {"user": "carol"}, "scope": "user", "metric": "tokens", "window": "day", "max": 5000},
	{"name": "research budget", "who": {"team": "research"}, "scope": "team", "metric": "tokens", "window": "day", "max": 8000},
]

# Shipped data: contractors 50k tokens per day ------------------------------------------

test_contractor_under_daily_tokens_is_allowed if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(10), "usage": day_tokens(1000)}
}

test_contractor_at_daily_tokens_is_denied_with_quota_window if {
	reasons := quota.deny with input as {"user": contractor, "request": req(10), "usage": day_tokens(50000)}
	some r in reasons
	r.code == "quota_tokens_per_day"
	r.quota == {"scope": "user", "window": "day", "metric": "tokens"}
}

test_prompt_that_would_overshoot_daily_tokens_is_denied if {
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": contractor, "request": req(200), "usage": day_tokens(49900)}
}

test_staff_have_no_daily_token_limit if {
	count(quota.deny) == 0 with input as {"user": researcher, "request": req(10), "usage": day_tokens(10000000)}
}

test_max_tokens_shrinks_to_what_is_left_of_the_day if {
	quota.max_tokens == 400 with input as {"user": contractor, "request": req(100), "usage": day_tokens(49500)}
}

test_rule_with_shrink_false_sets_no_max_tokens_but_still_denies if {
	rules := [{"who": {}, "scope": "user", "metric": "tokens", "window": "day", "max": 100, "shrink": false}]
	not quota.max_tokens with input as {"user": outsider, "request": req(10), "usage": day_tokens(50)}
		with data.quota.limits.rules as rules
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": outsider, "request": req(10), "usage": day_tokens(100)}
		with data.quota.limits.rules as rules
}

test_max_tokens_is_undefined_without_a_token_limit if {
	not quota.max_tokens with input as {"user": researcher, "request": req(100), "usage": day_tokens(49500)}
}

# Shipped data: requests per minute ---------------------------------------------------

test_requests_per_minute_limit_denies_contractors if {
	reasons := quota.deny with input as {"user": contractor, "request": req(1), "usage": {"user": {"minute": {"requests": 60}}}}
	some r in reasons
	r.code == "quota_requests_per_minute"
	r.quota.window == "minute"
	r.quota.metric == "requests"
}

test_requests_under_per_minute_limit_are_allowed if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(1), "usage": {"user": {"minute": {"requests": 59}}}}
}

test_staff_have_no_per_minute_limit if {
	count(quota.deny) == 0 with input as {"user": outsider, "request": req(1), "usage": {"user": {"minute": {"requests": 100000}}}}
}

# Shipped data: team research $500 per month, no user above 20% of it -----------------

test_team_budget_spent_denies_every_member if {
	usage := {"user": {"month": {"cost_usd": 1}}, "teams": {"research": {"month": {"cost_usd": 500}}}}
	reasons := quota.deny with input as {"user": researcher, "request": req(1), "usage": usage}
	some r in reasons
	r.code == "quota_cost_usd_per_month"
	r.quota == {"scope": "team", "window": "month", "metric": "cost_usd"}
}

test_team_budget_does_not_bind_people_outside_the_team if {
	usage := {"user": {"month": {"cost_usd": 1}}, "teams": {"research": {"month": {"cost_usd": 500}}}}
	count(quota.deny) == 0 with input as {"user": outsider, "request": req(1), "usage": usage}
}

test_member_above_a_fifth_of_the_team_budget_is_denied if {
	usage := {"user": {"month": {"cost_usd": 100}}, "teams": {"research": {"month": {"cost_usd": 150}}}}
	reasons := quota.deny with input as {"user": researcher, "request": req(1), "usage": usage}
	some r in reasons
	r.code == "quota_team_share"
	r.quota == {"scope": "user", "window": "month", "metric": "cost_usd"}
}

test_member_below_a_fifth_of_the_team_budget_is_allowed if {
	usage := {"user": {"month": {"cost_usd": 99.5}}, "teams": {"research": {"month": {"cost_usd": 150}}}}
	count(quota.deny) == 0 with input as {"user": researcher, "request": req(1), "usage": usage}
}

# Precedence: user within group within team -------------------------------------------

test_user_rule_replaces_group_rule_for_that_user if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(1), "usage": day_tokens(3000)}
		with data.quota.limits.rules as precedence_rules
}

test_user_rule_is_still_enforced if {
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": contractor, "request": req(1), "usage": day_tokens(5000)}
		with data.quota.limits.rules as precedence_rules
}

test_group_rule_still_binds_other_group_members if {
	other := object.union(contractor, {"sub": "cody"})
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": other, "request": req(1), "usage": day_tokens(3000)}
		with data.quota.limits.rules as precedence_rules
}

test_user_rule_does_not_lift_the_team_budget if {
	usage := {"user": {"day": {"tokens": 3000}}, "teams": {"research": {"day": {"tokens": 8000}}}}
	reasons := quota.deny with input as {"user": contractor, "request": req(1), "usage": usage}
		with data.quota.limits.rules as precedence_rules
	some r in reasons
	r.quota.scope == "team"
	not "user" in {x.quota.scope | some x in reasons}
}

test_max_tokens_is_the_strictest_of_user_and_team_limits if {
	usage := {"user": {"day": {"tokens": 1000}}, "teams": {"research": {"day": {"tokens": 7500}}}}
	quota.max_tokens == 400 with input as {"user": contractor, "request": req(100), "usage": usage}
		with data.quota.limits.rules as precedence_rules
}

test_priority_overrides_specificity if {
	rules := [
		{"who": {"group": "contractors"}, "scope": "user", "metric": "requests", "window": "hour", "max": 10},
		{"who": {}, "scope": "user", "metric": "requests", "window": "hour", "max": 5, "priority": 9},
	]
	"quota_requests_per_hour" in codes(quota.deny) with input as {"user": contractor, "request": req(1), "usage": {"user": {"hour": {"requests": 5}}}}
		with data.quota.limits.rules as rules
}

test_equally_specific_rules_all_apply_so_the_strictest_wins if {
	rules := [
		{"who": {"group": "contractors"}, "scope": "user", "metric": "requests", "window": "hour", "max": 10},
		{"who": {"team": "research"}, "scope": "user", "metric": "requests", "window": "hour", "max": 50},
		{"who": {"group": "staff"}, "scope": "user", "metric": "requests", "window": "hour", "max": 3},
	]
	caller := object.union(contractor, {"groups": ["contractors", "staff"]})
	"quota_requests_per_hour" in codes(quota.deny) with input as {"user": caller, "request": req(1), "usage": {"user": {"hour": {"requests": 3}}}}
		with data.quota.limits.rules as rules
}

# Team rules without a named team apply to each of the caller's teams -----------------

test_team_rule_for_everyone_applies_to_each_team if {
	rules := [{"who": {}, "scope": "team", "metric": "requests", "window": "day", "max": 100}]
	caller := object.union(researcher, {"teams": ["research", "ml"]})
	usage := {"teams": {"research": {"day": {"requests": 1}}, "ml": {"day": {"requests": 100}}}}
	reasons := quota.deny with input as {"user": caller, "request": req(1), "usage": usage}
		with data.quota.limits.rules as rules
	count(reasons) == 1
}

# Calling app (client) limits -----------------------------------------------------------

test_client_limit_applies_to_that_app if {
	rules := [{"who": {"client": "batch"}, "scope": "client", "metric": "tokens", "window": "hour", "max": 10}]
	reasons := quota.deny with input as {"user": outsider, "client": {"id": "batch"}, "request": req(1), "usage": {"client": {"hour": {"tokens": 10}}}}
		with data.quota.limits.rules as rules
	some r in reasons
	r.quota == {"scope": "client", "window": "hour", "metric": "tokens"}
}

test_client_limit_ignores_other_apps if {
	rules := [{"who": {"client": "batch"}, "scope": "client", "metric": "tokens", "window": "hour", "max": 10}]
	count(quota.deny) == 0 with input as {"user": outsider, "client": {"id": "chat"}, "request": req(1), "usage": {"client": {"hour": {"tokens": 10}}}}
		with data.quota.limits.rules as rules
}

# Store unavailable (usage.on_store_error: allow) and bad rules ----------------------

test_unavailable_counters_deny_nothing if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(1), "usage": {"unavailable": true}}
}

test_rule_with_unknown_metric_denies_everyone if {
	rules := [{"name": "typo", "who": {}, "scope": "user", "metric": "tokenz", "window": "day", "max": 10}]
	"quota_rule_invalid" in codes(quota.deny) with input as {"user": outsider, "request": req(1), "usage": {}}
		with data.quota.limits.rules as rules
}

test_rule_with_unknown_who_key_denies_everyone if {
	rules := [{"name": "typo", "who": {"groups": "x"}, "scope": "user", "metric": "tokens", "window": "day", "max": 10}]
	"quota_rule_invalid" in codes(quota.deny) with input as {"user": outsider, "request": req(1), "usage": {}}
		with data.quota.limits.rules as rules
}

test_non_boolean_shrink_is_invalid if {
	rules := [{"name": "bad", "who": {}, "scope": "user", "metric": "tokens", "window": "day", "max": 5, "shrink": "no"}]
	"quota_rule_invalid" in codes(quota.deny) with input as {"user": outsider, "request": req(1), "usage": {}}
		with data.quota.limits.rules as rules
}

test_share_rule_on_team_scope_is_invalid if {
	rules := [{"name": "bad", "who": {}, "scope": "team", "metric": "tokens", "window": "day", "share_of_team": 0.5}]
	"quota_rule_invalid" in codes(quota.deny) with input as {"user": outsider, "request": req(1), "usage": {}}
		with data.quota.limits.rules as rules
}

test_shipped_rules_are_all_valid if {
	count({r | some r in data.quota.limits.rules; quota._problem(r)}) == 0
}
