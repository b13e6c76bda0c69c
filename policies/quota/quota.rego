# METADATA
# title: Quotas and rate limits
# description: |
#   Limits from data.quota.limits.rules applied to the counters in input.usage.
#   deny is a set of reasons {code, message, quota: {scope, window, metric}} (the PEP
#   answers 429 with a Retry-After for that window); max_tokens, when defined, is the
#   largest output that still fits every token limit in effect. See docs/usage.md.
package regogate.quota

import rego.v1

rules := object.get(data, ["quota", "limits", "rules"], [])

_scopes := {"user", "team", "client"}

_metrics := {"requests", "prompt_tokens", "completion_tokens", "tokens", "cost_usd"}

_windows := {"minute", "hour", "day", "month"}

# Specificity of each matcher key: the most specific matching rule wins per counter.
_weights := {"user": 3, "group": 2, "role": 2, "client": 2, "kind": 2, "team": 1}

# METADATA
# description: Reasons to refuse the request because a quota is used up.
deny contains reason if {
	some c in effective
	used := _used(c)
	_exhausted(c, used)
	reason := {
		"code": c.code,
		"message": sprintf("quota %q reached: %v of %v %s per %s (%s)", [c.name, used, c.max, c.metric, c.window, c.scope]),
		"quota": {"scope": c.scope, "window": c.window, "metric": c.metric},
	}
}

# A rule the PEP cannot apply must not silently stop limiting anyone (fail closed).
deny contains reason if {
	some r in rules
	problem := _problem(r)
	reason := {
		"code": "quota_rule_invalid",
		"message": sprintf("quota rule %q is invalid: %s", [object.get(r, "name", "(unnamed)"), problem]),
	}
}

# METADATA
# description: Output-token cap that fits what is left of every token limit in effect.
max_tokens := min(caps) if {
	caps := {n |
		some c in effective
		c.metric in {"tokens", "completion_tokens"}
		c.shrink
		n := floor(c.max - _used(c) - _prompt_share(c))
		n >= 1
	}
	count(caps) > 0
}

# Counter exhausted, or (token limits) this request's estimated prompt alone would
# overshoot what is left.
_exhausted(c, used) if used >= c.max

_exhausted(c, used) if {
	c.metric in {"tokens", "prompt_tokens"}
	used + object.get(input.request, "estimated_tokens", 0) > c.max
}

_prompt_share(c) := object.get(input.request, "estimated_tokens", 0) if c.metric == "tokens"

else := 0

_used(c) := object.get(_counter(c.scope, c.subject), [c.window, c.metric], 0)

_counter("user", _) := object.get(input.usage, "user", {})

_counter("client", _) := object.get(input.usage, "client", {})

_counter("team", team) := object.get(input.usage, ["teams", team], {})

# METADATA
# description: The limits in effect for this caller, after precedence.
effective := _top(_fixed_candidates | _share_candidates)

# Within each counter (scope, subject, metric, window) keep only the highest-ranked rules.
_top(cands) := {c |
	some c in cands
	c.rank == max({x.rank | some x in cands; _group(x) == _group(c)})
}

_group(c) := [c.scope, c.subject, c.metric, c.window]

# One candidate per (matching rule, subject counter) with a fixed max.
_fixed_candidates contains c if {
	some r in _valid_rules
	not r.share_of_team
	some subject in _subjects(r)
	c := _candidate(r, subject, r.max, _default_code(r))
}

# Share-of-team rules: the max is a fraction of the team's limit in effect for the same
# metric and window (no team limit: the share rule does not apply).
_share_candidates contains c if {
	some r in _valid_rules
	r.share_of_team
	some team in _rule_teams(r)
	team_max := min({t.max |
		some t in _top(_fixed_candidates)
		t.scope == "team"
		t.subject == team
		t.metric == r.metric
		t.window == r.window
	})
	c := _candidate(r, input.user.sub, r.share_of_team * team_max, object.get(r, "code", "quota_team_share"))
}

_candidate(r, subject, max_value, code) := {
	"name": object.get(r, "name", "(unnamed)"),
	"scope": r.scope,
	"subject": subject,
	"metric": r.metric,
	"window": r.window,
	"max": max_value,
	"code": code,
	"rank": object.get(r, "priority", _rank(r)),
	"shrink": object.get(r, "shrink", true),
}

_default_code(r) := object.get(r, "code", sprintf("quota_%s_per_%s", [r.metric, r.window]))

_valid_rules contains r if {
	some r in rules
	not _problem(r)
	_matches(object.get(r, "who", {}))
}

_subjects(r) := {input.user.sub} if r.scope == "user"

_subjects(r) := {input.client.id} if {
	r.scope == "client"
	input.client.id
}

_subjects(r) := _rule_teams(r) if r.scope == "team"

_rule_teams(r) := {r.who.team} if r.who.team

else := {t | some t in object.get(input.user, "teams", [])}

_rank(r) := max({w | some k, _ in object.get(r, "who", {}); w := _weights[k]} | {0})

_matches(who) if {
	every k, v in who {
		_match(k, v)
	}
}

_match("user", v) if input.user.sub == v

_match("group", v) if v in object.get(input.user, "groups", [])

_match("role", v) if v in object.get(input.user, "roles", [])

_match("team", v) if v in object.get(input.user, "teams", [])

_match("client", v) if input.client.id == v

_match("kind", v) if input.user.kind == v

_problem(r) := "scope must be user, team or client" if not r.scope in _scopes

else := "metric must be requests, prompt_tokens, completion_tokens, tokens or cost_usd" if not r.metric in _metrics

else := "window must be minute, hour, day or month" if not r.window in _windows

else := "who has an unknown key" if {
	some k, _ in object.get(r, "who", {})
	not _weights[k]
}

else := "set exactly one of max and share_of_team" if {
	count({k | some k in ["max", "share_of_team"]; _ = r[k]}) != 1
}

else := "max must be a non-negative number" if {
	not is_number(object.get(r, "max", 0))
}

else := "shrink must be true or false" if {
	not is_boolean(object.get(r, "shrink", true))
}

else := "share_of_team must be a number between 0 and 1, with scope user" if {
	r.share_of_team
	not _share_ok(r)
}

_share_ok(r) if {
	is_number(r.share_of_team)
	r.share_of_team >= 0
	r.share_of_team <= 1
	r.scope == "user"
}
