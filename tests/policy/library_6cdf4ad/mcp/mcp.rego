# METADATA
# title: MCP tool access
# description: >-
#   Who may use which MCP server, tool, resource and prompt through the gateway
#   (input.request.api == "mcp", input.request.mcp; docs/mcp.md), from data.gateway.mcp.
#   The PEP lists only what these rules allow (one evaluation per listed item, the item
#   named in input.request.mcp), so a tool the user may not call is not listed either.
#   Rules: server groups; per-tool groups (the demo's admin_report is admins only); a tool
#   the catalog does not know is refused unless its server says unlisted_tools: allow;
#   read-only tools only for read_only_groups (contractors); shell/write_file only for the
#   platform teams; no secrets in tool arguments, no personal data from
#   no_personal_data_groups (others get it redacted); per-tool daily limits.
package regogate.mcp

import rego.v1

import data.regogate.lib

mcp := object.get(input.request, "mcp", {})

server_name := object.get(mcp, "server", "")

tool_name := mcp.tool if is_string(mcp.tool)

# The catalog entries of the server and of its tools ({} when unknown).
server := object.get(data.gateway.mcp.servers, server_name, {})

tools := object.get(server, "tools", {})

deny contains {"code": "mcp_server_unknown", "message": sprintf("MCP server %q is not in the policy catalog", [server_name])} if {
	input.request.api == "mcp"
	not data.gateway.mcp.servers[server_name]
	not lib.admin
}

deny contains {"code": "mcp_server_not_allowed", "message": sprintf("%s may not use MCP server %q", [lib.subject, server_name])} if {
	input.request.api == "mcp"
	data.gateway.mcp.servers[server_name]
	not lib.in_any_group(input.user, object.get(server, "groups", []))
	not lib.admin
}

deny contains {"code": "tool_unknown", "message": sprintf("tool %q of %q is not in the policy catalog", [tool_name, server_name])} if {
	input.request.api == "mcp"
	is_string(mcp.tool)
	not tools[tool_name]
	not object.get(server, "unlisted_tools", "deny") == "allow"
	not lib.admin
}

deny contains {"code": "tool_not_allowed", "message": sprintf("%s may not call %s/%s", [lib.subject, server_name, tool_name])} if {
	input.request.api == "mcp"
	is_string(mcp.tool)
	not lib.in_any_group(input.user, object.get(object.get(tools, tool_name, {}), "groups", ["*"]))
	not lib.admin
}

# Contractors and other read-only groups: only tools the catalog marks read_only.
deny contains {"code": "tool_not_read_only", "message": sprintf("%s may only call read-only tools; %s is not one", [lib.subject, tool_name])} if {
	input.request.api == "mcp"
	is_string(mcp.tool)
	some g in input.user.groups
	g in data.gateway.mcp.read_only_groups
	not object.get(object.get(tools, tool_name, {}), "read_only", false) == true
}

# shell, write_file and the like: the platform team only (admins included: no override).
deny contains {"code": "tool_platform_only", "message": sprintf("%s is reserved for the %v team", [tool_name, data.gateway.mcp.platform_teams])} if {
	input.request.api == "mcp"
	tool_name in data.gateway.mcp.platform_only_tools
	not lib.in_any_team(input.user, data.gateway.mcp.platform_teams)
}

deny contains {"code": "secret_in_arguments", "message": sprintf("the arguments of %s contain a %s", [tool_name, t])} if {
	input.request.api == "mcp"
	some t in input.content.types
	t in data.gateway.mcp.deny_argument_types
}

deny contains {"code": "personal_data_in_arguments", "message": sprintf("%s may not send personal data (%s) to tools", [lib.subject, t])} if {
	input.request.api == "mcp"
	some g in input.user.groups
	g in data.gateway.mcp.no_personal_data_groups
	some t in input.content.types
	t in data.gateway.mcp.redact_argument_types
}

# METADATA
# description: Finding types masked in tool and prompt arguments before they are forwarded.
redact contains t if {
	input.request.api == "mcp"
	some t in input.content.types
	t in data.gateway.mcp.redact_argument_types
}

# METADATA
# description: Largest result (JSON bytes) a tool, resource or prompt may return.
max_result_bytes := data.gateway.mcp.max_result_bytes if input.request.api == "mcp"

# Per-tool limits that apply to this call: data.gateway.mcp.limits["<server>/<tool>"] or
# ["<server>/*"], each {scope: user_tool | tool | user, window, max, name?}.
_limits contains [key, l] if {
	mcp.method == "tools/call"
	some pattern in {sprintf("%s/%s", [server_name, tool_name]), sprintf("%s/*", [server_name])}
	some l in data.gateway.mcp.limits[pattern]
	key := _key(l.scope)
}

_key("user_tool") := sprintf("%s %s/%s", [input.user.sub, server_name, tool_name])

_key("tool") := sprintf("%s/%s", [server_name, tool_name])

_key("user") := input.user.sub

_code(l) := object.get(l, "code", sprintf("tool_calls_per_%s", [l.window]))

deny contains {
	"code": _code(l),
	"message": sprintf("quota %q reached: %v of %v tool calls per %s (%s)", [object.get(l, "name", l.scope), used, l.max, l.window, l.scope]),
	"quota": {"scope": l.scope, "window": l.window, "metric": "requests"},
} if {
	some [_, l] in _limits
	used := input.usage[l.scope][l.window].requests
	used >= l.max
}

# METADATA
# description: The tool-call limits in effect, as the PEP's quota obligation (reserved atomically).
quota := [{
	"scope": l.scope, "key": key, "window": l.window, "metric": "requests", "limit": l.max,
	"code": _code(l), "name": object.get(l, "name", l.scope), "shrink": false,
} |
	some [key, l] in _limits
] if count(_limits) > 0
