"""One frozen, validated settings tree, loaded once from YAML + environment.

Each subsystem owns the model for its slice (``pep.auth.settings``, ``pep.policy.settings``,
...); this module only assembles them, interpolates ``${ENV}`` references and turns
validation errors into one readable message naming the offending key.

Interpolation (applied to every string in the YAML before validation):
    ${NAME}            value of environment variable NAME (error if unset)
    ${NAME:-default}   value of NAME, or ``default`` when unset or empty
    ${file:/path}      contents of a file (trailing newline stripped), for mounted secrets

A reference inside another (``${A:-sqlite:///${B}/x}``) is refused, not half-resolved.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from pep.audit.settings import AuditSettings
from pep.cache.settings import CacheSettings
from pep.auth.settings import IdentitySettings
from pep.content.settings import ContentSettings
from pep.events import EventSettings
from pep.mcp.settings import McpSettings
from pep.conversations import ConversationSettings
from pep.policy.settings import PolicySettings
from pep.routing.settings import ModelSettings, ProviderSettings
from pep.settings_base import Frozen
from pep.tracing_settings import TracingSettings
from pep.usage.settings import UsageSettings
from pep.workspace.settings import WorkspaceSettings


class ConfigError(Exception):
    """Raised for any invalid configuration; the message names the key."""


class LimitsSettings(Frozen):
    # Counted on the body as received and again as decoded (pep.http.body), so a gzip bomb
    # stops here too.
    max_body_bytes: int = Field(4 * 1024 * 1024, gt=0)
    # Large enough for real-world tokens with many group claims; beyond it aiohttp's parser
    # refuses the request (plain-text 400) before any of our work happens.
    max_header_bytes: int = Field(32 * 1024, gt=0)
    max_line_size: int = Field(16 * 1024, gt=0)
    # Streams held open at once; beyond it new streaming requests get 503 + Retry-After.
    # (Upstream deadlines -- connect, first byte, idle -- are per provider: providers.*.)
    max_concurrent_streams: int = Field(256, gt=0)
    # Client-side deadlines (docs/configuration.md). A request head (request line + headers)
    # must arrive within header_read_timeout_s of its first byte, a body within
    # body_read_timeout_s of its head, and an idle keep-alive connection is closed after
    # keepalive_timeout_s. Slow clients cannot hold connections open indefinitely.
    header_read_timeout_s: float = Field(10.0, gt=0)
    body_read_timeout_s: float = Field(30.0, gt=0)
    # Above the usual load-balancer idle timeouts (AWS ALB 60 s), so a proxy in front closes
    # an idle connection before the gateway does and never reuses one being closed.
    keepalive_timeout_s: float = Field(75.0, gt=0)
    # Open client connections at once. A new connection beyond it first evicts the oldest idle
    # one (no request in progress); if every connection is busy the new one is closed.
    max_connections: int = Field(1024, gt=0)


class ServerSettings(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    request_id_header: str = "x-request-id"
    # Where SQLite audit, dev IdP keys and other local state live.
    data_dir: Path = Path(".regogate")
    # Whether client-supplied X-Request-Id values are honoured (sanitised) or replaced.
    trust_client_request_id: bool = False
    limits: LimitsSettings = LimitsSettings()
    # How much of a policy denial reaches the client: "codes" (reason codes + messages),
    # "codes_only" (codes, generic message), "none" (generic 403 only).
    expose_deny_reasons: str = Field("codes", pattern="^(codes|codes_only|none)$")


class Settings(Frozen):
    server: ServerSettings = ServerSettings()
    identity: IdentitySettings
    policy: PolicySettings = PolicySettings()
    audit: AuditSettings = AuditSettings()
    content: ContentSettings = ContentSettings()
    usage: UsageSettings = UsageSettings()
    responses: ConversationSettings = ConversationSettings()
    tracing: TracingSettings = TracingSettings()
    events: EventSettings = EventSettings()
    cache: CacheSettings = CacheSettings()
    workspace: WorkspaceSettings = WorkspaceSettings()
    mcp: McpSettings = McpSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        ws = self.workspace.issuer
        if ws is not None and ws not in {i.issuer for i in self.identity.issuers}:
            raise ValueError(f"workspace.issuer: {ws!r} is not one of identity.issuers")
        embed = self.cache.semantic_embeddings_model
        if embed is not None and (embed not in self.models or not self.models[embed].embeddings):
            raise ValueError(f"cache.semantic_embeddings_model: {embed!r} is not a configured "
                             "embeddings model")
        for name, model in self.models.items():
            for dep in model.deployments():
                if dep.provider not in self.providers:
                    raise ValueError(
                        f"models.{name}: provider {dep.provider!r} is not defined under providers"
                    )


_REF = re.compile(r"\$\{([^}]+)\}")


def _interpolate(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def repl(m: re.Match[str]) -> str:
        ref = m.group(1)
        if "${" in ref:
            # ${A:-x${B}} would otherwise end at the first "}" and leave "${B" in the value.
            raise ConfigError(f"{where}: nested reference ${{{ref}}}...: a ${{...}} inside"
                              " another is not supported; set the whole value in one variable")
        if ref.startswith("file:"):
            path = Path(ref[5:])
            try:
                return path.read_text().rstrip("\n")
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read secret file {path}: {exc.strerror}") from exc
        name, sep, default = ref.partition(":-")
        env = os.environ.get(name)
        if env:
            return env
        if sep:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _REF.sub(repl, value)


def _format_validation_error(exc: ValidationError) -> str:
    errors = [(tuple(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, "))
              for err in exc.errors()]
    # A list whose only item failed also reports "should have at least 1 item": noise that
    # hides the real cause, so an error at a location containing another one is dropped.
    kept = [(loc, msg) for loc, msg in errors
            if not any(other != loc and other[:len(loc)] == loc for other, _ in errors)]
    lines = [f"{'.'.join(loc) or '(root)'}: {msg}" for loc, msg in kept]
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n" + "\n".join(f"  {line}" for line in lines)


def settings_from_mapping(raw: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(_interpolate(raw, ""))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from exc
    except ValueError as exc:  # model_post_init cross-checks
        raise ConfigError(f"invalid configuration: {exc}") from exc


def load_settings(path: Path) -> Settings:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return settings_from_mapping(raw)
