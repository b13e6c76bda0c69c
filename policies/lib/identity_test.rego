package regogate.lib_test

import rego.v1

import data.regogate.lib

test_admin_group_is_admin if lib.is_admin({"groups": ["admins"]})

test_other_group_is_not_admin if not lib.is_admin({"groups": ["ml-team"]})

test_missing_groups_is_not_admin if not lib.is_admin({})

test_star_matches_everyone if lib.in_any_group({"groups": []}, ["*"])

test_group_membership if lib.in_any_group({"groups": ["a", "b"]}, ["b"])

test_no_group_membership if not lib.in_any_group({"groups": ["a"]}, ["b"])

test_team_membership if lib.in_any_team({"teams": ["research"]}, ["research"])

test_admin_rule_reads_input if lib.admin with input as {"user": {"groups": ["admins"]}}

test_admin_rule_false_for_others if not lib.admin with input as {"user": {"groups": ["ml-team"]}}
