# METADATA
# title: Model and API access
# description: >-
#   Who may use which model (by group or team, from data.gateway.models), which model kind
#   serves which API, the per-model max_tokens cap, who may read audit and usage data, and
#   who may administer the response cache (cache.admin: stats and purge).
#   Admins (data.gateway.admin_groups) may use every model: the admin override.
#
#   deny and max_tokens run on every request, so they are written for the embedded engine's
#   cost model (docs/policies.md "Performance"): each rule they reference costs about three
#   microseconds, a literal set, a comprehension or a function call a fraction of that. The
#   named rules below (model, model_allowed, api_allowed...) are kept for tests and custom
#   rules; the hot path inlines them.
package regogate.access

import rego.v1

import data.regogate.lib

model_apis := {"chat.completions", "responses", "completions", "messages", "messages.count_tokens", "embeddings", "models.list"}

gateway_apis := {"audit.read", "usage.read", "cache.admin"}

# Never undefined, so that a deny's message always renders (an undefined message would drop
# the deny: fail open).
requested_model := object.get(input, ["request", "model"], "")

model := data.gateway.models[requested_model]

# METADATA
# description: The user may use the requested model (group, team, or admin override).
model_allowed if may_use(model)

# METADATA
# description: >-
#   The user may use catalog entry m. One else-chain, "*" (the common case) first: the
#   engine stops at the first grant that holds.
may_use(m) if {
	"*" in m.groups
} else := true if {
	some g in m.groups
	g in input.user.groups
} else := true if {
	some t in m.teams
	t in input.user.teams
} else := true if {
	some g in input.user.groups
	g in data.gateway.admin_groups
}

api_allowed if lib.in_any_group(input.user, data.gateway.apis[input.request.api].groups)

# Model APIs, model in the catalog: the user may use it, and its kind serves the API (an
# embeddings model cannot serve chat and vice versa; models.list shows both kinds).
deny contains reason if {
	input.request.api in {"chat.completions", "responses", "completions", "messages", "messages.count_tokens", "embeddings", "models.list"}
	m := data.gateway.models[object.get(input.request, "model", "")]
	some reason in ({r |
		not may_use(m)
		r := {"code": "model_not_allowed", "message": sprintf("%s may not use model %q", [lib.subject, requested_model])}
	} | {r |
		input.request.api in {"chat.completions", "responses", "completions", "messages", "messages.count_tokens"}
		m.kind == "embeddings"
		r := {"code": "model_wrong_api", "message": sprintf("model %q does not serve %s", [requested_model, input.request.api])}
	}) | {r |
		input.request.api == "embeddings"
		not m.kind == "embeddings"
		r := {"code": "model_wrong_api", "message": sprintf("model %q does not serve embeddings", [requested_model])}
	}
}

# A model the policy does not know is refused, except for admins: fail closed for everyone
# else when a model is configured in the gateway but nobody wrote policy for it yet.
deny contains {"code": "model_unknown", "message": sprintf("model %q is not in the policy catalog", [requested_model])} if {
	input.request.api in {"chat.completions", "responses", "completions", "messages", "messages.count_tokens", "embeddings", "models.list"}
	not data.gateway.models[object.get(input.request, "model", "")]
	not lib.admin
}

deny contains {"code": "api_not_allowed", "message": sprintf("%s may not use %s", [lib.subject, input.request.api])} if {
	input.request.api in {"audit.read", "usage.read", "cache.admin"}
	not api_allowed
}

deny contains {"code": "api_unknown", "message": sprintf("unknown api %q", [object.get(input, ["request", "api"], "")])} if {
	not input.request.api in {"chat.completions", "responses", "completions", "messages", "messages.count_tokens", "embeddings", "models.list", "responses.read", "responses.delete", "audit.read", "usage.read", "cache.admin", "mcp"}
}

# METADATA
# description: Output-token cap for chat requests; the PEP takes the minimum over all caps.
max_tokens := data.gateway.models[object.get(input.request, "model", "")].max_tokens if {
	input.request.api in {"chat.completions", "responses", "completions", "messages"}
} else := data.gateway.default_max_tokens if {
	input.request.api in {"chat.completions", "responses", "completions", "messages"}
}

chat_api if input.request.api in {"chat.completions", "responses", "completions", "messages"}

# METADATA
# description: A model whose catalog entry says reroute_to is served by that model instead.
reroute := data.gateway.models[object.get(input.request, "model", "")].reroute_to
