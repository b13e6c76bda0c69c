package regogate.output_test

import rego.v1

import data.regogate.output

answer(types) := {"output": {"text": "...", "types": types, "final": true}}

test_no_output_section_means_no_output_rules if {
	count(output.deny) == 0 with input as {"content": {"types": ["private_key"]}}
	count(output.redact) == 0 with input as {"content": {"types": ["email"]}}
}

test_email_in_answer_is_redacted if output.redact == {"email"} with input as answer(["email"])

test_private_key_in_answer_is_denied if {
	{r.code | some r in output.deny} == {"secret_in_output"} with input as answer(["private_key"])
}
