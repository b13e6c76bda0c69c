# METADATA
# title: Data residency
# description: >-
#   Contractors may not send personal data to models outside the EU. Which groups are
#   restricted, which regions are allowed and which finding types count as personal data
#   come from data.gateway.residency; each model's region from data.gateway.models.
#   (The worked example of docs/policies.md.)
package regogate.residency

import rego.v1

import data.regogate.lib

residency := data.gateway.residency

# A model without a region counts as outside: fail closed.
default model_region := "unknown"

model_region := data.gateway.models[input.request.model].region

personal_data contains t if {
	some t in input.content.types
	t in residency.personal_data
}

deny contains {"code": "personal_data_outside_eu", "message": sprintf("%s may not send personal data (%s) to model %q in region %s", [lib.subject, concat(", ", sort(personal_data)), input.request.model, model_region])} if {
	# Cheapest test first (most prompts carry no personal data); the named rules above are
	# only evaluated when it holds (each rule costs the embedded engine microseconds).
	count({t | some t in input.content.types; t in data.gateway.residency.personal_data}) > 0
	lib.in_any_group(input.user, residency.restricted_groups)
	not model_region in residency.allowed_regions
}
