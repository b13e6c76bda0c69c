package regogate.quota_test

import rego.v1

import data.regogate.quota

# Callers ------------------------------------------------------------------------------

contractor := {"sub": "carol", "kind": "user", "groups": ["contractors"], "roles": [], "teams": ["research"]}

researcher := {"sub": "rita", "kind": "user", "groups": ["staff"], "roles": [], "teams": ["research"]}

outsider := {"sub": "olga", "kind": "user", "groups": ["staff"], "roles": [], "teams": []}

req(n) := {"estimated_tokens": n}

day_tokens(n) := {"user": {"day": {"tokens": n}}}

codes(reasons) := {r.code | some r in reasons}

limit(scope, metric, window, max_value) := {"scope": scope, "metric": metric, "window": window, "max": max_value}

# Limits used by the precedence tests, independent of the shipped data.
precedence := {
	"groups": {"contractors": [limit("user", "tokens", "day", 1000)]},
	"users": {"carol": [limit("user", "tokens", "day", 5000)]},
	"teams": {"research": [limit("team", "tokens", "day", 8000)]},
}

# Shipped data: contractors 50k tokens per day ------------------------------------------

test_contractor_under_daily_tokens_is_allowed if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(10), "usage": day_tokens(1000)}
}

test_contractor_at_daily_tokens_is_denied_with_quota_window if {
	reasons := quota.deny with input as {"user": contractor, "request": req(10), "usage": day_tokens(50000)}
	some r in reasons
	r.code == "quota_tokens_per_day"
	r.quota == {"scope": "user", "window": "day", "metric": "tokens"}
	contains(r.message, "contractors daily tokens")
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

test_max_tokens_is_undefined_without_a_token_limit if {
	not quota.max_tokens with input as {"user": researcher, "request": req(100), "usage": day_tokens(49500)}
}

test_limit_with_shrink_false_sets_no_max_tokens_but_still_denies if {
	limits := {"everyone": [object.union(limit("user", "tokens", "day", 100), {"shrink": false})]}
	not quota.max_tokens with input as {"user": outsider, "request": req(10), "usage": day_tokens(50)}
		with data.quota.limits as limits
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": outsider, "request": req(10), "usage": day_tokens(100)}
		with data.quota.limits as limits
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

test_share_follows_the_team_limit_in_effect if {
	limits := {"teams": {"research": [
		limit("team", "tokens", "day", 1000),
		{"scope": "user", "metric": "tokens", "window": "day", "share_of_team": 0.5},
	]}}
	"quota_team_share" in codes(quota.deny) with input as {"user": researcher, "request": req(0), "usage": day_tokens(500)}
		with data.quota.limits as limits
	quota.max_tokens == 499 with input as {"user": researcher, "request": req(0), "usage": day_tokens(1)}
		with data.quota.limits as limits
}

test_share_without_a_team_limit_does_not_apply if {
	limits := {"teams": {"research": [{"scope": "user", "metric": "tokens", "window": "day", "share_of_team": 0.5}]}}
	count(quota.deny) == 0 with input as {"user": researcher, "request": req(0), "usage": day_tokens(100000)}
		with data.quota.limits as limits
}

# Precedence: user within group within team -------------------------------------------

test_user_limit_replaces_group_limit_for_that_user if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(1), "usage": day_tokens(3000)}
		with data.quota.limits as precedence
}

test_user_limit_is_still_enforced if {
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": contractor, "request": req(1), "usage": day_tokens(5000)}
		with data.quota.limits as precedence
}

test_group_limit_still_binds_other_group_members if {
	other := object.union(contractor, {"sub": "cody"})
	"quota_tokens_per_day" in codes(quota.deny) with input as {"user": other, "request": req(1), "usage": day_tokens(3000)}
		with data.quota.limits as precedence
}

test_user_limit_does_not_lift_the_team_budget if {
	usage := {"user": {"day": {"tokens": 3000}}, "teams": {"research": {"day": {"tokens": 8000}}}}
	reasons := quota.deny with input as {"user": contractor, "request": req(1), "usage": usage}
		with data.quota.limits as precedence
	{r.quota.scope | some r in reasons} == {"team"}
}

test_max_tokens_is_the_strictest_of_user_and_team_limits if {
	usage := {"user": {"day": {"tokens": 1000}}, "teams": {"research": {"day": {"tokens": 7500}}}}
	quota.max_tokens == 400 with input as {"user": contractor, "request": req(100), "usage": usage}
		with data.quota.limits as precedence
}

test_group_limit_replaces_team_and_everyone_limits_on_the_same_counter if {
	limits := {
		"everyone": [limit("user", "requests", "hour", 1)],
		"teams": {"research": [limit("user", "requests", "hour", 2)]},
		"groups": {"contractors": [limit("user", "requests", "hour", 10)]},
	}
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(1), "usage": {"user": {"hour": {"requests": 5}}}}
		with data.quota.limits as limits
	"quota_requests_per_hour" in codes(quota.deny) with input as {"user": researcher, "request": req(1), "usage": {"user": {"hour": {"requests": 2}}}}
		with data.quota.limits as limits
}

test_equally_specific_limits_all_apply_so_the_strictest_wins if {
	limits := {
		"groups": {"contractors": [limit("user", "requests", "hour", 10)], "staff": [limit("user", "requests", "hour", 3)]},
		"roles": {"intern": [limit("user", "requests", "hour", 50)]},
	}
	caller := object.union(contractor, {"groups": ["contractors", "staff"], "roles": ["intern"]})
	"quota_requests_per_hour" in codes(quota.deny) with input as {"user": caller, "request": req(1), "usage": {"user": {"hour": {"requests": 3}}}}
		with data.quota.limits as limits
}

# Team limits outside a team's own section apply to each of the caller's teams ----------

test_team_limit_for_everyone_applies_to_each_team if {
	limits := {"everyone": [limit("team", "requests", "day", 100)]}
	caller := object.union(researcher, {"teams": ["research", "ml"]})
	usage := {"teams": {"research": {"day": {"requests": 1}}, "ml": {"day": {"requests": 100}}}}
	reasons := quota.deny with input as {"user": caller, "request": req(1), "usage": usage}
		with data.quota.limits as limits
	count(reasons) == 1
}

test_team_section_limit_is_on_that_team_only if {
	limits := {"teams": {"research": [limit("team", "requests", "day", 100)]}}
	caller := object.union(researcher, {"teams": ["research", "ml"]})
	usage := {"teams": {"research": {"day": {"requests": 1}}, "ml": {"day": {"requests": 100}}}}
	count(quota.deny) == 0 with input as {"user": caller, "request": req(1), "usage": usage}
		with data.quota.limits as limits
}

# Calling app, role and kind sections ------------------------------------------------

test_client_limit_applies_to_that_app if {
	limits := {"clients": {"batch": [limit("client", "tokens", "hour", 10)]}}
	reasons := quota.deny with input as {"user": outsider, "client": {"id": "batch"}, "request": req(1), "usage": {"client": {"hour": {"tokens": 10}}}}
		with data.quota.limits as limits
	some r in reasons
	r.quota == {"scope": "client", "window": "hour", "metric": "tokens"}
}

test_client_limit_ignores_other_apps if {
	limits := {"clients": {"batch": [limit("client", "tokens", "hour", 10)]}}
	count(quota.deny) == 0 with input as {"user": outsider, "client": {"id": "chat"}, "request": req(1), "usage": {"client": {"hour": {"tokens": 10}}}}
		with data.quota.limits as limits
}

test_kind_limit_applies_to_service_callers if {
	limits := {"kinds": {"service": [limit("user", "requests", "minute", 5)]}}
	service := object.union(outsider, {"kind": "service"})
	"quota_requests_per_minute" in codes(quota.deny) with input as {"user": service, "request": req(1), "usage": {"user": {"minute": {"requests": 5}}}}
		with data.quota.limits as limits
	count(quota.deny) == 0 with input as {"user": outsider, "request": req(1), "usage": {"user": {"minute": {"requests": 5}}}}
		with data.quota.limits as limits
}

test_custom_code_is_used if {
	limits := {"everyone": [object.union(limit("user", "requests", "day", 1), {"code": "daily_cap"})]}
	codes(quota.deny) == {"daily_cap"} with input as {"user": outsider, "request": req(1), "usage": {"user": {"day": {"requests": 1}}}}
		with data.quota.limits as limits
}

# Store unavailable (usage.on_store_error: allow) and broken limits -------------------

test_unavailable_counters_deny_nothing if {
	count(quota.deny) == 0 with input as {"user": contractor, "request": req(1), "usage": {"unavailable": true}}
}

test_shipped_limits_are_valid if {
	count(quota.config_errors) == 0
}

test_config_errors_name_each_broken_limit if {
	limits := {
		"everyone": [limit("user", "tokenz", "day", 1)],
		"groups": {"g": [
			limit("user", "tokens", "week", 1),
			limit("org", "tokens", "day", 1),
			limit("user", "tokens", "day", "1000"),
			{"scope": "team", "metric": "tokens", "window": "day", "share_of_team": 0.5},
			{"scope": "user", "metric": "tokens", "window": "day", "share_of_team": 0.5, "max": 3},
			object.union(limit("user", "tokens", "day", 1), {"shrink": "no"}),
			limit("user", "tokens", "day", 1),
		]},
		"group": {},
	}
	quota.config_errors == {
		"everyone[0] \"\"",
		"groups.g[0] \"\"", "groups.g[1] \"\"", "groups.g[2] \"\"", "groups.g[3] \"\"",
		"groups.g[4] \"\"", "groups.g[5] \"\"",
		"unknown section \"group\"",
	} with data.quota.limits as limits
}

# The quota obligation: the limits in effect, for the PEP's atomic check-and-reserve ----

test_obligation_lists_the_limits_in_effect_for_a_contractor if {
	ob := quota.obligation with input as {"user": contractor, "request": req(10), "usage": {}}
	{l.code | some l in ob} == {"quota_tokens_per_day", "quota_requests_per_minute", "quota_team_share", "quota_cost_usd_per_month"}
	some l in ob
	l == {
		"scope": "user", "key": "carol", "metric": "requests", "window": "minute", "limit": 60,
		"code": "quota_requests_per_minute", "name": "contractors requests per minute", "shrink": true,
	}
}

test_obligation_carries_the_team_key_and_the_share_as_a_limit if {
	ob := quota.obligation with input as {"user": researcher, "request": req(1), "usage": {}}
	{[l.scope, l.key, l.metric, l.limit] | some l in ob} == {["team", "research", "cost_usd", 500], ["user", "rita", "cost_usd", 100]}
}

test_obligation_follows_precedence if {
	ob := quota.obligation with input as {"user": contractor, "request": req(1), "usage": {}}
		with data.quota.limits as precedence
	{[l.scope, l.limit] | some l in ob} == {["user", 5000], ["team", 8000]}
}

test_obligation_is_listed_even_when_the_snapshot_already_denies if {
	ob := quota.obligation with input as {"user": contractor, "request": req(10), "usage": day_tokens(50000)}
	"quota_tokens_per_day" in {l.code | some l in ob}
}

test_obligation_keeps_shrink_false if {
	limits := {"groups": {"contractors": [object.union(limit("user", "tokens", "day", 30), {"shrink": false})]}}
	[l.shrink | some l in quota.obligation] == [false] with input as {"user": contractor, "request": req(1), "usage": {}}
		with data.quota.limits as limits
}

test_no_obligation_for_a_caller_no_limit_names if {
	not quota.obligation with input as {"user": outsider, "request": req(1), "usage": {}}
}

# Reason codes: a limit's own code, the share code, else quota_<metric>_per_<window> (concat
# for string metric and window, sprintf's text for anything else: the same as before).
test_default_code_names_metric_and_window if {
	quota._code({"metric": "tokens", "window": "day"}) == "quota_tokens_per_day"
}

test_explicit_code_and_share_code_come_first if {
	quota._code({"code": "mine", "metric": "tokens", "window": "day", "share_of_team": 0.2}) == "mine"
	quota._code({"code": 7, "metric": "tokens", "window": "day", "share_of_team": 0.2}) == "quota_team_share"
}

# (object.get: the limit typed as data is, so OPA's type checker lets the number through.)
test_default_code_of_a_non_string_metric_is_sprintf_text if {
	quota._code(object.get({"r": {"metric": 5, "window": "day"}}, "r", {})) == sprintf("quota_%s_per_%s", [5, "day"])
}

test_default_code_is_undefined_without_a_window if {
	not quota._code({"metric": "tokens"})
}
