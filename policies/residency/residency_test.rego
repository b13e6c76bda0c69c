package regogate.residency_test

import rego.v1

import data.regogate.residency

bob := {"sub": "bob", "groups": ["contractors"]}

alice := {"sub": "alice", "groups": ["ml-team"]}

req(user, m, types) := {"user": user, "request": {"api": "chat.completions", "model": m}, "content": {"types": types}}

test_contractor_personal_data_to_us_model_is_denied if {
	{r.code | some r in residency.deny} == {"personal_data_outside_eu"} with input as req(bob, "mock-gpt", ["email"])
}

test_contractor_personal_data_to_eu_model_is_allowed if {
	count(residency.deny) == 0 with input as req(bob, "mock-gpt-eu", ["email"])
}

test_contractor_without_personal_data_is_allowed if {
	count(residency.deny) == 0 with input as req(bob, "mock-gpt", [])
}

test_employee_personal_data_to_us_model_is_allowed if {
	count(residency.deny) == 0 with input as req(alice, "mock-gpt", ["email"])
}

test_model_without_region_counts_as_outside if {
	count(residency.deny) == 1 with input as req(bob, "mystery", ["phone"])
}

test_region_is_data_driven if {
	count(residency.deny) == 0 with input as req(bob, "mock-gpt", ["email"])
		with data.gateway.residency.allowed_regions as ["eu", "us"]
}
