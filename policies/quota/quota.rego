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
#   caller's sub, groups, roles, teams, client and kind, never scanned; precedence is
#   membership in the key sets of the more specific sections; counters are read once per
#   limit. Validation of the limits is not repeated per request: config_errors lists broken
#   limits for `regogate policy test` and the bundle loader (a limit with a typo must fail
#   the bundle, not be silently ignored).
package regogate.quota

import rego.v1

# METADATA
# description: Reasons to refuse the request because a quota is used up.
deny contains _reason(key, r, max_value, used) if {
	some [key, r, max_value, used] in effective
	used >= max_value
}

# Token limits: this request's estimated prompt alone would overshoot what is left.
deny contains _reason(key, r, max_value, used) if {
	some [key, r, max_value, used] in effective
	key[2] in {"tokens", "prompt_tokens"}
	used + input.request.estimated_tokens > max_value
}

_reason(key, r, max_value, used) := {
	"code": _code(r),
	"message": sprintf("quota %q reached: %v of %v %s per %s (%s)", [object.get(r, "name", key[0]), used, max_value, key[2], key[3], key[0]]),
	"quota": {"scope": key[0], "window": key[3], "metric": key[2]},
}

# METADATA
# description: Output-token cap that fits what is left of every token limit in effect.
max_tokens := min(caps) if {
	caps := {n |
		some [key, r, max_value, used] in effective
		key[2] == "tokens"
		object.get(r, "shrink", true)
		n := floor((max_value - used) - input.request.estimated_tokens)
		n >= 1
	} | {n |
		some [key, r, max_value, used] in effective
		key[2] == "completion_tokens"
		object.get(r, "shrink", true)
		n := floor(max_value - used)
		n >= 1
	}
	count(caps) > 0
}

# METADATA
# description: |
#   The limits in effect, as the PEP's `quota` obligation. The deny rules above decide on the
#   snapshot in input.usage (which already counts requests in flight at their reservation);
#   the PEP then checks these limits again and reserves this request's estimated usage on
#   every counter in one atomic step, so concurrent requests cannot all pass the same
#   snapshot. A failed reservation is the same 429 with the same code (docs/usage.md).
obligation := [{
	"scope": key[0],
	"key": key[1],
	"metric": key[2],
	"window": key[3],
	"limit": max_value,
	"code": _code(r),
	"name": object.get(r, "name", key[0]),
	"shrink": object.get(r, "shrink", true),
} |
	some [key, r, max_value, _] in effective
] if {
	count(effective) > 0
}

_code(r) := r.code if is_string(r.code)

else := "quota_team_share" if r.share_of_team

# concat for the usual case (validated limits have string metric and window): the same text
# as sprintf's %s, without calling the exact-formatting sprintf extension (Python), which
# costs the embedded engine more than the rest of this function (docs/performance.md).
else := concat("", ["quota_", r.metric, "_per_", r.window]) if {
	is_string(r.metric)
	is_string(r.window)
}

else := sprintf("quota_%s_per_%s", [r.metric, r.window])

# One rule of local comprehensions: on the embedded engine each rule costs microseconds, a
# comprehension that finds nothing a fraction of one, and most callers are named by no limit
# at all (docs/policies.md "Performance").

# Whose counter a limit is on, by scope. A team limit is on each of the caller's teams
# unless the teams.<team> section named it (then on that team only, below). A rule, not a
# local: it is evaluated only when some limit names the caller.
_subjects := {
	"user": [s | s := input.user.sub],
	"client": [c | c := input.client.id; is_string(c)],
	"team": [t | some t in input.user.teams],
}

# METADATA
# description: "[[scope, subject, metric, window], limit, max, used] for each limit in effect"
effective := team_effective | user_effective if {
	l := data.quota.limits

	# [key, limit] for every counter a limit naming this caller applies to, one set per
	# section specificity; key is [scope, subject, metric, window]. Users 3 > groups, roles,
	# clients, kinds 2 > teams 1 > everyone 0.
	rank3 := {[[r.scope, s, r.metric, r.window], r] |
		some r in l.users[input.user.sub]
		some s in _subjects[r.scope]
	}
	rank2 := (({[[r.scope, s, r.metric, r.window], r] |
		some g in input.user.groups
		some r in l.groups[g]
		some s in _subjects[r.scope]
	} | {[[r.scope, s, r.metric, r.window], r] |
		some x in input.user.roles
		some r in l.roles[x]
		some s in _subjects[r.scope]
	}) | {[[r.scope, s, r.metric, r.window], r] |
		some r in l.kinds[input.user.kind]
		some s in _subjects[r.scope]
	}) | {[[r.scope, s, r.metric, r.window], r] |
		some r in l.clients[input.client.id]
		some s in _subjects[r.scope]
	}
	rank1 := {[[r.scope, t, r.metric, r.window], r] |
		some t in input.user.teams
		some r in l.teams[t]
		r.scope == "team"
	} | {[[r.scope, s, r.metric, r.window], r] |
		some t in input.user.teams
		some r in l.teams[t]
		r.scope != "team"
		some s in _subjects[r.scope]
	}
	rank0 := {[[r.scope, s, r.metric, r.window], r] |
		some r in l.everyone
		some s in _subjects[r.scope]
	}

	# Most callers are named by no limit: stop here for them.
	count(((rank3 | rank2) | rank1) | rank0) > 0

	# Precedence: only the most specific limits on a counter apply (ties all apply). Set
	# membership of the keys of each rank, no arithmetic on ranks (each + is a call to the
	# exact-decimal extension).
	keys3 := {key | some [key, _] in rank3}
	keys2 := {key | some [key, _] in rank2}
	keys1 := {key | some [key, _] in rank1}
	in_effect := ((rank3 | {[key, r] |
		some [key, r] in rank2
		not key in keys3
	}) | {[key, r] |
		some [key, r] in rank1
		not key in keys3
		not key in keys2
	}) | {[key, r] |
		some [key, r] in rank0
		not key in keys3
		not key in keys2
		not key in keys1
	}

	team_effective := {[key, r, r.max, used] |
		some [key, r] in in_effect
		key[0] == "team"
		used := object.get(input.usage, ["teams", key[1], key[3], key[2]], 0)
	}

	# share_of_team: a fraction of the team's limit in effect for the same metric and window
	# (the smallest, for a user in several teams); no team limit, no share limit.
	user_effective := {[key, r, r.max, used] |
		some [key, r] in in_effect
		key[0] != "team"
		not r.share_of_team
		used := object.get(input.usage, [key[0], key[3], key[2]], 0)
	} | {[key, r, r.share_of_team * team_max, used] |
		some [key, r] in in_effect
		r.share_of_team
		team_max := min({m | some [k, _, m, _] in team_effective; k[2] == key[2]; k[3] == key[3]})
		used := object.get(input.usage, [key[0], key[3], key[2]], 0)
	}
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
