# METADATA
# title: Identity helpers
# description: Group, team and admin predicates over input.user, shared by every module.
package regogate.lib

import rego.v1

# METADATA
# description: True when the user is in one of the admin groups of data.gateway.admin_groups.
is_admin(user) if {
	some g in user.groups
	g in data.gateway.admin_groups
}

# METADATA
# description: >-
#   Who is asking, for reason messages. Never undefined: a deny whose message failed to
#   render would silently disappear (fail open).
subject := object.get(input, ["user", "sub"], "unknown user")

# METADATA
# description: The caller is an admin (rule form of is_admin, cheaper on the request path).
admin if {
	some g in input.user.groups
	g in data.gateway.admin_groups
}

# METADATA
# description: True when the user is in any of the given groups ("*" matches everyone).
in_any_group(user, groups) if "*" in groups

in_any_group(user, groups) if {
	some g in user.groups
	g in groups
}

# METADATA
# description: True when any of the user's teams is in the given list.
in_any_team(user, teams) if {
	some t in user.teams
	t in teams
}
