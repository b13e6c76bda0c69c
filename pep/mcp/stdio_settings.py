"""Settings of a local stdio MCP server the gateway launches and supervises.

    mcp:
      servers:
        files:
          stdio:
            command: /usr/local/bin/mcp-files      # an executable; never a shell line
            args: ["--root", "/srv/share"]
            env: {FILES_TOKEN: "${file:/run/secrets/files}"}
            inherit_env: [PATH, HOME, LANG]

The command comes from configuration only: nothing a client sends names a program, an
argument or an environment variable. The child gets ``inherit_env`` from the gateway's
environment (not the whole of it: the gateway's own secrets stay with the gateway) plus
``env``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from pep.settings_base import Frozen

_DEFAULT_INHERIT = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PYTHONPATH")


class StdioServerSettings(Frozen):
    command: str = Field(min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, SecretStr] = Field(default_factory=dict)
    inherit_env: tuple[str, ...] = _DEFAULT_INHERIT
    cwd: Path | None = None
    # The MCP handshake the gateway performs with the child at each (re)start.
    protocol_version: str = "2025-06-18"
    startup_timeout_s: float = Field(10.0, gt=0)
    # Restart after a crash: backoff doubles from initial to max; a child that lived
    # backoff_reset_after_s before dying restarts after the initial delay again.
    restart_backoff_initial_s: float = Field(0.5, gt=0)
    restart_backoff_max_s: float = Field(30.0, gt=0)
    backoff_reset_after_s: float = Field(30.0, gt=0)
    # One JSON-RPC line from the child may be at most this long; longer is a protocol error.
    max_message_bytes: int = Field(4 * 1024 * 1024, gt=1024)
    max_in_flight: int = Field(64, gt=0)
    # Close: stdin closed, then SIGTERM after this long, then SIGKILL after as long again.
    shutdown_timeout_s: float = Field(3.0, gt=0)
    # stderr lines are logged (secrets from ``env`` masked), each cut to this length.
    max_log_line_chars: int = Field(500, gt=0)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name or "\0" in value.get_secret_value():
                raise ValueError(f"environment variable {name!r} is not valid")
        return env

    @field_validator("command")
    @classmethod
    def _no_nul(cls, command: str) -> str:
        if "\0" in command:
            raise ValueError("command must not contain NUL")
        return command
