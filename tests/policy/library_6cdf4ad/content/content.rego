# METADATA
# title: Prompt content rules
# description: >-
#   Acts on the PEP's detector findings (input.content.types): personal data is redacted
#   before forwarding (the "redact" obligation), secrets such as private keys and API keys
#   deny the request. Lists live in data.gateway.content.
package regogate.content

import rego.v1

# METADATA
# description: Secrets never leave the gateway, whoever asks (no admin override).
deny contains {"code": "secret_in_prompt", "message": sprintf("the request contains a %s; secrets are never sent to models", [t])} if {
	some t in input.content.types
	t in data.gateway.content.deny
}

# METADATA
# description: Finding types the PEP masks before forwarding.
redact contains t if {
	some t in input.content.types
	t in data.gateway.content.redact
}

# Off by default (data.gateway.content.deny_invisible: false). Invisible characters (Unicode
# tag block, zero-width, bidi controls) are stripped from what is forwarded anyway
# (content.invisible: strip); set deny_invisible: true to refuse such requests instead, e.g.
# together with content.invisible: keep, when hidden text should be evidence, not cleaned up.
deny contains {"code": "invisible_text", "message": "the request contains invisible characters (hidden text); remove them and retry"} if {
	"invisible_text" in input.content.types
	object.get(data.gateway.content, "deny_invisible", false) == true
}
