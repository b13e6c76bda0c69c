# METADATA
# title: Response caching
# description: >-
#   The "cache" obligation (docs/caching.md). Default: an exact cache per user (issuer +
#   sub) with a short TTL; sampled requests (temperature unset or > 0) are cached too in the
#   per-user scope, so a user may get the same answer to the same question twice within the
#   TTL, never anyone else's. The apps in data.gateway.cache.team_clients (e.g. a support
#   bot) share entries per team instead. Nothing is cached for a prompt with personal-data
#   findings (data.gateway.cache.skip_finding_types). Settings live in data.gateway.cache.
package regogate.cache

import rego.v1

# METADATA
# description: The obligation the request decision carries (mode off when a skip rule matches).
obligation := {"mode": "off"} if {
	skip
} else := {
	"mode": object.get(data.gateway.cache, "mode", "exact"),
	"scope": scope,
	"ttl_s": object.get(data.gateway.cache, "ttl_s", 300),
	"sampled": scope == "user",
} if {
	data.gateway.cache.enabled == true
	scope := team_or_user
}

# METADATA
# description: Apps whose users share answers within their team; everyone else per user.
team_or_user := "team" if {
	input.client.id in data.gateway.cache.team_clients
	is_string(input.user.team)
} else := "user"

# METADATA
# description: Personal data in the prompt means its answer is not kept at all.
skip if {
	some t in input.content.types
	t in data.gateway.cache.skip_finding_types
}
