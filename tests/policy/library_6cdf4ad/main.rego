# METADATA
# title: regogate decision
# description: >-
#   Entry point the PEP evaluates (data.regogate.decision). Combines the reasons and
#   obligations of the sub-packages: access, content, residency, quota (policies/quota/),
#   output. Allowed when no module denies. Shape: pep/policy/contract.py Decision v1;
#   documented in docs/policy-contract.md.
# entrypoint: true
package regogate

import rego.v1

# Literal sets below rather than references to this rule: on the embedded engine a literal
# costs a fraction of a microsecond, each rule reference about three (the decision is
# evaluated on every request; see docs/policies.md "Performance").
generation_apis := {"chat.completions", "responses", "completions", "messages", "embeddings"}

default allow := false

# A request the policy cannot even classify is never allowed.
allow if {
	is_string(input.request.api)
	count(deny) == 0
}

# Access rules apply to every API. Prompt-side rules (content, residency) only where there is
# a prompt; quotas (written by the usage team in policies/quota/) govern model calls only,
# so a user over budget can still list models and read their own usage. One rule, not one
# per module: each rule costs the embedded engine microseconds on every request. A new
# module joins the union (or gets a deny rule of its own).
deny contains r if {
	some r in (data.regogate.access.deny | {x |
		input.request.api == "mcp"
		some x in data.regogate.mcp.deny
	}) | {x |
		input.request.api in {"chat.completions", "responses", "completions", "messages", "embeddings"}
		some x in ((data.regogate.content.deny | data.regogate.residency.deny) | data.regogate.quota.deny)
	}
}

system_prompts contains p if {
	some g in input.user.groups
	p := data.gateway.system_prompts[g]
}

# METADATA
# description: >-
#   Obligations of the request decision: max_tokens (the minimum over every module's
#   max_tokens, each optional), and for model calls redact, model (reroute), quota (the
#   limits in effect, reserved atomically by the PEP), system_prompt and cache (chat);
#   audit_content always. Pairs from comprehensions, in one rule:
#   cheaper on the embedded engine than a rule per obligation.
obligations := {k: v |
	caps := {c | c := data.regogate.access.max_tokens} | {c |
		input.request.api in {"chat.completions", "responses", "completions", "messages", "embeddings"}
		c := data.regogate.quota.max_tokens
	}
	some [k, v] in ((({["max_tokens", min(caps)] | count(caps) > 0} | {["redact", sort(redact)] |
		input.request.api in {"chat.completions", "responses", "completions", "messages", "embeddings"}
		redact := data.regogate.content.redact
		count(redact) > 0
	}) | ({["model", m] |
		input.request.api in {"chat.completions", "responses", "completions", "messages", "embeddings"}
		m := data.regogate.access.reroute
	} | {["quota", q] |
		input.request.api in {"chat.completions", "responses", "completions", "messages", "embeddings"}
		q := data.regogate.quota.obligation
	} | {["cache", c] |
		input.request.api in {"chat.completions", "responses", "completions", "messages"}
		c := data.regogate.cache.obligation
	} | {["redact", sort(redact)] |
		input.request.api == "mcp"
		redact := data.regogate.mcp.redact
		count(redact) > 0
	} | {["quota", q] |
		input.request.api == "mcp"
		q := data.regogate.mcp.quota
	} | {["max_result_bytes", n] |
		input.request.api == "mcp"
		n := data.regogate.mcp.max_result_bytes
	} | {["system_prompt", concat("\n\n", sort(prompts))] |
		input.request.api in {"chat.completions", "responses", "completions", "messages"}
		prompts := {p | some g in input.user.groups; p := data.gateway.system_prompts[g]}
		count(prompts) > 0
	})) | {["audit_content", object.get(data.gateway.audit_content, "default", "digest")]})
}

# METADATA
# description: >-
#   The decision document (Decision v1 minus the ids the PEP fills in). Two phases share
#   this entry point. With input.output (the PEP's output decision on the model's answer)
#   only the output module is consulted: the request itself was already decided, and
#   re-running access, quota and residency on every answer would double the cost of each
#   request for nothing. Without it, it is the request decision (every module).
decision := {
	"allow": count(output_deny) == 0,
	"reasons": [r | some r in output_deny],
	"obligations": object.union(
		{"redact": sort(output_redact) | count(output_redact) > 0},
		{"audit_content": object.get(data.gateway.audit_content, "default", "digest")},
	),
} if {
	input.output
	output_deny := data.regogate.output.deny
	output_redact := data.regogate.output.redact
} else := {
	"allow": count([1 | is_string(input.request.api); count(reasons) == 0]) == 1,
	"reasons": reasons,
	"obligations": obligations,
} if {
	# allow, inline: a comprehension is cheaper than a reference to the allow rule.
	reasons := [r | some r in deny]
}

# METADATA
# description: >-
#   Every problem the modules find in their data (e.g. a quota limit with a typo), as
#   messages. Depends on data only: the embedded engine's bundle loader evaluates it once
#   per bundle revision and refuses the bundle when it is not empty (pep/policy/compiled.py),
#   so the checks cost nothing per request.
config_errors contains sprintf("quota: %s", [e]) if some e in data.regogate.quota.config_errors
