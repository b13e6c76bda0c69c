# METADATA
# title: Model and API access
# description: >-
#   Who may use which model (by group or team, from data.gateway.models), which model kind
#   serves which API, the per-model max_tokens cap, and who may read audit and usage data.
#   Admins (data.gateway.admin_groups) may use every model: the admin override.
package regogate.access

import rego.v1

import data.regogate.lib

model_apis := {"chat.completions", "messages", "embeddings", "models.list"}

gateway_apis := {"audit.read", "usage.read"}

# Never undefined, so that a deny's message always renders (an undefined message would drop
# the deny: fail open).
requested_model := object.get(input, ["request", "model"], "")

model := data.gateway.models[requested_model]

# METADATA
# description: The user may use the requested model (group, team, or admin override).
#
# One else-chain rather than four rules: the engine stops at the first grant that holds,
# and "*" (the common case) is tried first.
model_allowed if {
	"*" in model.groups
} else := true if {
	some g in model.groups
	g in input.user.groups
} else := true if {
	some t in model.teams
	t in input.user.teams
} else := true if {
	lib.admin
}

api_allowed if lib.in_any_group(input.user, data.gateway.apis[input.request.api].groups)

# Reasons to refuse. The API classes (model, gateway, unknown) exclude each other, so each
# is one rule whose reasons are comprehensions: a comprehension whose conditions fail costs
# far less on the embedded engine than a rule, and messages are only rendered for a deny.
deny contains reason if {
	input.request.api in model_apis
	some reason in _model_denials
}

deny contains {"code": "api_not_allowed", "message": sprintf("%s may not use %s", [lib.subject, input.request.api])} if {
	input.request.api in gateway_apis
	not api_allowed
}

deny contains {"code": "api_unknown", "message": sprintf("unknown api %q", [object.get(input, ["request", "api"], "")])} if {
	not input.request.api in model_apis
	not input.request.api in gateway_apis
}

_model_denials := {r |
	# A model the policy does not know is refused, except for admins: fail closed for
	# everyone else when a model is configured in the gateway but nobody wrote policy for it.
	not lib.admin
	r := {"code": "model_unknown", "message": sprintf("model %q is not in the policy catalog", [requested_model])}
} if not model

_model_denials := {r |
	not model_allowed
	r := {"code": "model_not_allowed", "message": sprintf("%s may not use model %q", [lib.subject, requested_model])}
} | {r |
	# An embeddings model cannot serve chat and vice versa; models.list shows both kinds.
	input.request.api in {"chat.completions", "messages"}
	model.kind == "embeddings"
	r := {"code": "model_wrong_api", "message": sprintf("model %q does not serve %s", [requested_model, input.request.api])}
} | {r |
	input.request.api == "embeddings"
	not model.kind == "embeddings"
	r := {"code": "model_wrong_api", "message": sprintf("model %q does not serve embeddings", [requested_model])}
} if model

# METADATA
# description: Output-token cap for chat requests; the PEP takes the minimum over all caps.
max_tokens := model.max_tokens if {
	input.request.api in {"chat.completions", "messages"}
} else := data.gateway.default_max_tokens if {
	input.request.api in {"chat.completions", "messages"}
}

chat_api if input.request.api in {"chat.completions", "messages"}

# METADATA
# description: A model whose catalog entry says reroute_to is served by that model instead.
reroute := model.reroute_to
