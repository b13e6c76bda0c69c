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

generation_apis := {"chat.completions", "messages", "embeddings"}

default allow := false

# A request the policy cannot even classify is never allowed.
allow if {
	is_string(input.request.api)
	count(deny) == 0
}

deny contains r if some r in data.regogate.access.deny

# Prompt-side rules only where there is a prompt.
deny contains r if {
	input.request.api in generation_apis
	some r in data.regogate.content.deny
}

deny contains r if {
	input.request.api in generation_apis
	some r in data.regogate.residency.deny
}

# Quotas (written by the usage team in policies/quota/) govern model calls only, so a user
# over budget can still list models and read their own usage.
deny contains r if {
	input.request.api in generation_apis
	some r in data.regogate.quota.deny
}


# The cap is the minimum over every module's max_tokens (each optional).
caps contains c if c := data.regogate.access.max_tokens

caps contains c if {
	input.request.api in generation_apis
	c := data.regogate.quota.max_tokens
}

redact contains t if {
	input.request.api in generation_apis
	some t in data.regogate.content.redact
}

system_prompts contains p if {
	some g in input.user.groups
	p := data.gateway.system_prompts[g]
}

obligations["max_tokens"] := min(caps) if count(caps) > 0

obligations["redact"] := sort(redact) if count(redact) > 0

obligations["model"] := data.regogate.access.reroute if input.request.api in generation_apis

obligations["system_prompt"] := concat("\n\n", sort(system_prompts)) if {
	input.request.api in {"chat.completions", "messages"}
	count(system_prompts) > 0
}

obligations["audit_content"] := object.get(data.gateway.audit_content, "default", "digest")

# METADATA
# description: The decision document (Decision v1 minus the ids the PEP fills in).
#
# Two phases share this entry point. Without input.output it is the request decision (every
# module). With input.output (the PEP's output decision on the model's answer) only the
# output module is consulted: the request itself was already decided, and re-running access,
# quota and residency on every answer would double the cost of each request for nothing.
decision := {
	"allow": allow,
	"reasons": [r | some r in deny],
	"obligations": obligations,
} if not input.output

decision := {
	"allow": count(data.regogate.output.deny) == 0,
	"reasons": [r | some r in data.regogate.output.deny],
	"obligations": output_obligations,
} if input.output

output_obligations["redact"] := sort(data.regogate.output.redact) if count(data.regogate.output.redact) > 0

output_obligations["audit_content"] := object.get(data.gateway.audit_content, "default", "digest")
