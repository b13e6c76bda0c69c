"""A real stdio MCP server (the ``mcp`` SDK's MCPServer) that the gateway launches in tests.

Tools: ``echo``, ``env`` (is a variable set in my environment?), ``crash`` (exit at once),
``hang`` (never answer), ``garbage`` (write non-JSON-RPC bytes on stdout), ``whisper``
(write a line on stderr). Run as ``python -m tests.mcp.stdio_server``.
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("regogate-test-stdio")
# The SDK diverts fd 1 to stderr while it serves (so a stray print cannot corrupt the wire);
# a duplicate taken first still reaches the gateway's pipe, as a misbehaving server would.
WIRE = os.dup(1)


@server.tool()
def echo(text: str) -> str:
    """Return the text."""
    return text


@server.tool()
def env(name: str) -> str:
    """Whether an environment variable is set here: 'set' or 'unset'."""
    return "set" if name in os.environ else "unset"


@server.tool()
def crash() -> str:
    """Exit the process immediately."""
    os._exit(3)


@server.tool()
async def hang() -> str:
    """Never answer (until cancelled)."""
    await asyncio.sleep(3600)
    return "late"


@server.tool()
def garbage() -> str:
    """Write bytes on stdout that are not a JSON-RPC message."""
    os.write(WIRE, b"this is not json-rpc\n")
    return "wrote"


@server.tool()
def whisper(text: str) -> str:
    """Write a line on stderr."""
    print(f"log line: {text}", file=sys.stderr, flush=True)
    return "ok"


if __name__ == "__main__":
    if os.environ.get("STDIO_TEST_FAIL_AT_START") == "1":
        sys.exit(5)
    server.run("stdio")
