package regogate.mcp_test

import rego.v1

import data.regogate.mcp

alice := {"sub": "alice", "groups": ["ml-team"], "teams": ["research"]}

bob := {"sub": "bob", "groups": ["contractors"], "teams": ["sales"]}

carol := {"sub": "carol", "groups": ["admins"], "teams": ["platform"]}

dave := {"sub": "dave", "groups": ["ml-team"], "teams": ["platform"]}

files := {
	"groups": ["*"],
	"tools": {
		"read_file": {"read_only": true},
		"write_file": {},
		"shell": {},
	},
}

call(user, server, tool) := {
	"user": user,
	"request": {"api": "mcp", "mcp": {"server": server, "method": "tools/call", "tool": tool, "arguments": {}}},
	"content": {"types": []},
	"usage": {},
}

codes(i) := {r.code | some r in mcp.deny with input as i}

codes_files(i) := {r.code | some r in mcp.deny with input as i with data.gateway.mcp.servers.files as files}

test_everyone_may_call_echo if {
	codes(call(alice, "demo", "echo")) == set()
	codes(call(bob, "demo", "echo")) == set()
}

test_admin_report_is_for_admins if {
	codes(call(alice, "demo", "admin_report")) == {"tool_not_allowed"}
	codes(call(carol, "demo", "admin_report")) == set()
}

test_unlisted_tool_is_refused if codes(call(alice, "demo", "rm")) == {"tool_unknown"}

test_unlisted_tool_allowed_when_server_says_so if {
	open := {"groups": ["*"], "unlisted_tools": "allow", "tools": {}}
	count(mcp.deny) == 0 with input as call(alice, "open", "anything")
		with data.gateway.mcp.servers.open as open
}

test_unknown_server_is_refused if "mcp_server_unknown" in codes(call(alice, "nope", "echo"))

test_server_groups_apply if {
	restricted := {"groups": ["admins"], "tools": {"x": {}}}
	"mcp_server_not_allowed" in codes(call(alice, "r", "x")) with data.gateway.mcp.servers.r as restricted
}

test_methods_without_a_tool_need_only_the_server if {
	i := {"user": bob, "request": {"api": "mcp", "mcp": {"server": "demo", "method": "initialize"}}, "content": {"types": []}}
	codes(i) == set()
}

test_contractors_get_read_only_tools if {
	codes_files(call(bob, "files", "read_file")) == set()
	codes_files(call(bob, "files", "write_file")) == {"tool_not_read_only", "tool_platform_only"}
}

test_shell_and_write_file_for_the_platform_team_only if {
	codes_files(call(alice, "files", "shell")) == {"tool_platform_only"}
	codes_files(call(dave, "files", "shell")) == set()
	codes_files(call(carol, "files", "write_file")) == set()
}

test_secret_in_arguments_is_refused if {
	i := object.union(call(alice, "demo", "echo"), {"content": {"types": ["api_key"]}})
	codes(i) == {"secret_in_arguments"}
}

test_personal_data_redacted_for_employees if {
	i := object.union(call(alice, "demo", "echo"), {"content": {"types": ["email"]}})
	codes(i) == set()
	mcp.redact == {"email"} with input as i
}

test_personal_data_refused_for_contractors if {
	i := object.union(call(bob, "demo", "echo"), {"content": {"types": ["email"]}})
	codes(i) == {"personal_data_in_arguments"}
}

test_daily_tool_limit if {
	limits := {"demo/echo": [{"scope": "user_tool", "window": "day", "max": 2}]}
	under := object.union(call(alice, "demo", "echo"), {"usage": {"user_tool": {"day": {"requests": 1}}}})
	over := object.union(call(alice, "demo", "echo"), {"usage": {"user_tool": {"day": {"requests": 2}}}})
	codes(under) == set() with data.gateway.mcp.limits as limits
	codes(over) == {"tool_calls_per_day"} with data.gateway.mcp.limits as limits
	q := mcp.quota with input as under with data.gateway.mcp.limits as limits
	q == [{"scope": "user_tool", "key": "alice demo/echo", "window": "day", "metric": "requests", "limit": 2, "code": "tool_calls_per_day", "name": "user_tool", "shrink": false}]
}

test_limits_apply_to_calls_only if {
	limits := {"demo/echo": [{"scope": "user_tool", "window": "day", "max": 0}]}
	i := {"user": alice, "request": {"api": "mcp", "mcp": {"server": "demo", "method": "tools/list", "tool": "echo"}}, "content": {"types": []}, "usage": {}}
	codes(i) == set() with data.gateway.mcp.limits as limits
}

test_rules_ignore_model_calls if {
	count(mcp.deny) == 0 with input as {"user": bob, "request": {"api": "chat.completions", "model": "mock-gpt"}, "content": {"types": ["api_key"]}}
}
