# METADATA
# title: Output rules
# description: >-
#   Evaluated only for the optional output decision, when the PEP sets input.output to the
#   model's answer (whole, or accumulated so far in a stream). Personal data in answers is
#   redacted; secrets in answers cut the response.
package regogate.output

import rego.v1

deny contains {"code": "secret_in_output", "message": sprintf("the answer contains a %s", [t])} if {
	some t in input.output.types
	t in data.gateway.content.output_deny
}

redact contains t if {
	some t in input.output.types
	t in data.gateway.content.output_redact
}
