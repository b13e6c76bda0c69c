package regogate.content_test

import rego.v1

import data.regogate.content

with_types(types) := {"user": {"sub": "alice", "groups": ["ml-team"]}, "content": {"types": types}}

test_clean_prompt_has_no_findings if {
	count(content.deny) == 0 with input as with_types([])
	count(content.redact) == 0 with input as with_types([])
}

test_email_is_redacted_not_denied if {
	content.redact == {"email"} with input as with_types(["email"])
	count(content.deny) == 0 with input as with_types(["email"])
}

test_private_key_is_denied if {
	{r.code | some r in content.deny} == {"secret_in_prompt"} with input as with_types(["private_key"])
}

test_api_key_is_denied if count(content.deny) == 1 with input as with_types(["api_key", "email"])

test_unknown_finding_type_is_ignored if {
	count(content.deny) == 0 with input as with_types(["weather"])
	count(content.redact) == 0 with input as with_types(["weather"])
}

test_invisible_text_is_allowed_by_default if {
	count(content.deny) == 0 with input as with_types(["invisible_text"])
}

test_invisible_text_is_denied_when_the_option_is_on if {
	{r.code | some r in content.deny} == {"invisible_text"} with input as with_types(["invisible_text"])
		with data.gateway.content.deny_invisible as true
}

test_deny_invisible_without_invisible_text_denies_nothing if {
	count(content.deny) == 0 with input as with_types(["email"])
		with data.gateway.content.deny_invisible as true
}
