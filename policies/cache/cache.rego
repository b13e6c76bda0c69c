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
	# skip and team_or_user, inline: data.gateway.cache is looked up once, into a local (each
	# lookup of data or reference to a rule costs the engine microseconds per request).
	some t in input.content.types
	t in data.gateway.cache.skip_finding_types
} else := {
	"mode": object.get(settings, "mode", "exact"),
	"scope": scope,
	"ttl_s": object.get(settings, "ttl_s", 300),
	"sampled": scope == "user",
} if {
	settings := data.gateway.cache
	settings.enabled == true

	# "team" when the app shares per team and the caller has a team, else "user".
	scope := ["user", "team"][count([1 | input.client.id in settings.team_clients; is_string(input.user.team)])]
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
