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
