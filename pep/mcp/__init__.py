"""The MCP gateway: Model Context Protocol over streamable HTTP at ``/mcp/{server}``.

See docs/mcp.md. ``upstream`` holds the seam every upstream transport implements.
"""
