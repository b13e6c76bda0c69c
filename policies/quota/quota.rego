# METADATA
# title: Quotas and rate limits
# description: |
#   Limits from data.quota.limits (policies/quota/limits/data.yaml) applied to the counters
#   in input.usage. deny is a set of reasons {code, message, quota: {scope, window, metric}}
#   (the PEP answers 429 with a Retry-After for that window); max_tokens, when defined, is
#   the largest output that still fits every token limit in effect. See docs/usage.md.
#
#   This runs on every model call, so it is written for the embedded engine's cost model
#   (each function call or rule indirection costs microseconds): limits are looked up by the
#   caller's sub, groups, roles, teams, client and kind, never scanned; precedence is three
#   set lookups; counters are read once per limit. Validation of the limits is not repeated
#   per request: config_errors lists broken limits for `regogate policy test` and the
#   bundle loader (a limit with a typo must fail the bundle, not be silently ignored).
package regogate.quota

import rego.v1

# METADATA
# description: Reasons to refuse the request because a quota is used up.
deny contains reason if {
	some [key, r, max_value, used] in effective
	_exhausted(key[2], used, max_value)
	reason := {
		"code": _code(r),
		"message": sprintf("quota %q reached: %v of %v %s per %s (%s)", [object.get(r, "name", key[0]), used, max_value, key[2], key[3], key[0]]),
		"quota": {"scope": key[0], "window": key[3], "metric": key[2]},
	}
}

# METADATA
# description: Output-token cap that fits what is left of every token limit in effect.
max_tokens := min(caps) if {
	caps := {n |
		some [key, r, max_value, used] in effective
		key[2] in {"tokens", "completion_tokens"}
		object.get(r, "shrink", true)
		n := floor((max_value - used) - _prompt_share(key[2]))
		n >= 1
	}
	count(caps) > 0
}

_exhausted(_, used, max_value) if used >= max_value

# Token limits: this request's estimated prompt alone would overshoot what is left.
_exhausted(metric, used, max_value) if {
	metric in {"tokens", "prompt_tokens"}
	used + input.request.estimated_tokens > max_value
}

_prompt_share("tokens") := input.request.estimated_tokens

_prompt_share(metric) := 0 if metric != "tokens"

_code(r) := r.code if is_string(r.code)

else := "quota_team_share" if r.share_of_team

else := sprintf("quota_%s_per_%s", [r.metric, r.window])

# [rank, limit, team named by the section] for every limit naming this caller. Rank is the
# section's specificity: users 3 > groups, roles, clients, kinds 2 > teams 1 > everyone 0.
_matched contains [0, r, null] if some r in data.quota.limits.everyone

_matched contains [1, r, t] if {
	some t in input.user.teams
	some r in data.quota.limits.teams[t]
}

_matched contains [2, r, null] if {
	some g in input.user.groups
	some r in data.quota.limits.groups[g]
}

_matched contains [2, r, null] if {
	some x in input.user.roles
	some r in data.quota.limits.roles[x]
}

_matched contains [2, r, null] if some r in data.quota.limits.kinds[input.user.kind]

_matched contains [2, r, null] if some r in data.quota.limits.clients[input.client.id]

_matched contains [3, r, null] if some r in data.quota.limits.users[input.user.sub]

# [key, rank, limit] for each counter a matched limit applies to; key is
# [scope, subject, metric, window]. A team limit applies to the team whose section named
# it, or else to each of the caller's teams; share_of_team limits are on the user counter.
_entries contains [[r.scope, input.user.sub, r.metric, r.window], rank, r] if {
	some [rank, r, _] in _matched
	r.scope == "user"
}

_entries contains [[r.scope, input.client.id, r.metric, r.window], rank, r] if {
	some [rank, r, _] in _matched
	r.scope == "client"
	is_string(input.client.id)
}

_entries contains [[r.scope, team, r.metric, r.window], rank, r] if {
	some [rank, r, team] in _matched
	r.scope == "team"
	team != null
}

_entries contains [[r.scope, team, r.metric, r.window], rank, r] if {
	some [rank, r, null] in _matched
	r.scope == "team"
	some team in input.user.teams
}

_ranked contains [key, rank] if some [key, rank, _] in _entries

# Precedence: only the most specific limits on a counter apply (ties all apply).
_in_effect contains [key, r] if {
	some [key, rank, r] in _entries
	not [key, rank + 1] in _ranked
	not [key, rank + 2] in _ranked
	not [key, rank + 3] in _ranked
}

# METADATA
# description: "[[scope, subject, metric, window], limit, max, used] for each limit in effect"
effective := _team_effective | _user_effective

_team_effective contains [key, r, r.max, used] if {
	some [key, r] in _in_effect
	key[0] == "team"
	used := object.get(input.usage, ["teams", key[1], key[3], key[2]], 0)
}

_user_effective contains [key, r, r.max, used] if {
	some [key, r] in _in_effect
	key[0] != "team"
	not r.share_of_team
	used := object.get(input.usage, [key[0], key[3], key[2]], 0)
}

# share_of_team: a fraction of the team's limit in effect for the same metric and window
# (the smallest, for a user in several teams); no team limit, no share limit.
_user_effective contains [key, r, r.share_of_team * team_max, used] if {
	some [key, r] in _in_effect
	r.share_of_team
	team_max := min({m | some [k, _, m, _] in _team_effective; k[2] == key[2]; k[3] == key[3]})
	used := object.get(input.usage, [key[0], key[3], key[2]], 0)
}

# Structural validity of one limit: a max limit on any scope, or a share_of_team limit on
# the user scope.
_ok(r) if {
	r.metric in {"requests", "prompt_tokens", "completion_tokens", "tokens", "cost_usd"}
	r.window in {"minute", "hour", "day", "month"}
	is_boolean(object.get(r, "shrink", true))
	_limit_ok(r)
}

_limit_ok(r) if {
	r.scope in {"user", "team", "client"}
	is_number(r.max)
	r.max >= 0
	not r.share_of_team
}

_limit_ok(r) if {
	r.scope == "user"
	is_number(r.share_of_team)
	r.share_of_team >= 0
	r.share_of_team <= 1
	not r.max
}

_sections := {"everyone", "users", "groups", "roles", "teams", "clients", "kinds"}

# METADATA
# description: Every invalid limit in data.quota.limits, e.g. "groups.contractors[1]".
config_errors contains sprintf("everyone[%d] %q", [i, object.get(r, "name", "")]) if {
	some i, r in object.get(data.quota.limits, "everyone", [])
	not _ok(r)
}

config_errors contains sprintf("%s.%s[%d] %q", [section, key, i, object.get(r, "name", "")]) if {
	some section in _sections - {"everyone"}
	some key, list in object.get(data.quota.limits, section, {})
	some i, r in list
	not _ok(r)
}

config_errors contains sprintf("unknown section %q", [k]) if {
	some k, _ in data.quota.limits
	not k in _sections
}
