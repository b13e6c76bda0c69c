"""Users and clients of the dev IdP, loaded once from YAML (``idp/users.yaml`` by default)."""

from __future__ import annotations

import hmac
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CLIENT_CREDENTIALS = "client_credentials"
# Dev-only grant: a registered client asks for a user's token by username, no password.
DEV_USER_GRANT = "urn:regogate:dev:user"
# RFC 6749 4.1 with PKCE S256 required (RFC 7636, as OAuth 2.1 and the MCP authorization
# spec require): the workspace's browser sign-in (idp/authorize.py, a login page) and MCP
# clients (idp/grants.py, login_hint as the dev login).
AUTHORIZATION_CODE = "authorization_code"
# RFC 8693: only for clients that list it (a gateway trading a user's token for one
# audience-bound to an upstream).
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANT_TYPES = (CLIENT_CREDENTIALS, DEV_USER_GRANT, AUTHORIZATION_CODE, TOKEN_EXCHANGE)
# What a client gets when its entry names no grant_types (loopback redirects need no
# registration, RFC 8252 7.3, so the code grant is usable by default).
DEFAULT_GRANT_TYPES = (CLIENT_CREDENTIALS, DEV_USER_GRANT, AUTHORIZATION_CODE)


class DirectoryError(Exception):
    """The users file is missing or invalid; the message names the file and the key."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class User(_Entry):
    username: str
    sub: str
    email: str | None = None
    name: str | None = None
    groups: tuple[str, ...] = ()
    team: str | None = None
    roles: tuple[str, ...] = ()
    # Further claims copied verbatim into this user's tokens (e.g. to mimic another IdP).
    extra: dict[str, Any] = Field(default_factory=dict)

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["sub"] = self.sub
        out["preferred_username"] = self.username
        if self.email is not None:
            out["email"] = self.email
        if self.name is not None:
            out["name"] = self.name
        out["groups"] = list(self.groups)
        if self.team is not None:
            out["team"] = self.team
        if self.roles:
            out["roles"] = list(self.roles)
        return out


class Client(_Entry):
    client_id: str
    # None: a public client (RFC 6749 2.1), which may only use the code grant, with PKCE.
    secret: str | None = Field(None, repr=False)
    grant_types: tuple[str, ...] = DEFAULT_GRANT_TYPES
    scope: str = "openid"
    roles: tuple[str, ...] = ()
    description: str = ""
    # Registered redirection endpoints (RFC 6749 3.1.2), compared as exact strings; a
    # loopback IP literal registered without a port matches any port (RFC 8252 7.3).
    redirect_uris: tuple[str, ...] = ()
    # token exchange: the resource/audience values this client may ask for (empty: any).
    exchange_targets: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        return self.secret is None

    def secret_matches(self, presented: str) -> bool:
        if self.secret is None:
            return False
        return hmac.compare_digest(self.secret.encode(), presented.encode())


class Directory(_Entry):
    users: dict[str, User]
    clients: dict[str, Client]


def default_users_file() -> Path:
    return Path(str(resources.files("idp").joinpath("users.yaml")))


def _entries(raw: dict[str, Any], section: str, key: str) -> dict[str, dict[str, Any]]:
    items = raw.get(section) or {}
    if not isinstance(items, dict):
        raise DirectoryError(f"{section} must be a mapping of {key} -> attributes")
    out: dict[str, dict[str, Any]] = {}
    for name, attrs in items.items():
        if attrs is None:
            attrs = {}
        if not isinstance(attrs, dict):
            raise DirectoryError(f"{section}.{name} must be a mapping")
        entry = {key: str(name), **attrs}
        if section == "users":
            entry.setdefault("sub", str(name))
        out[str(name)] = entry
    return out


def load_directory(path: Path | None = None) -> Directory:
    path = path or default_users_file()
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DirectoryError(f"cannot read users file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise DirectoryError(f"users file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise DirectoryError(f"users file {path} must contain a mapping with users and clients")
    try:
        directory = Directory.model_validate(
            {
                "users": _entries(raw, "users", "username"),
                "clients": _entries(raw, "clients", "client_id"),
            }
        )
    except DirectoryError as exc:
        raise DirectoryError(f"users file {path}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise DirectoryError(f"users file {path}: {problems}") from exc
    for client in directory.clients.values():
        unknown = set(client.grant_types) - set(GRANT_TYPES)
        if unknown:
            raise DirectoryError(
                f"users file {path}: clients.{client.client_id}.grant_types: "
                f"unknown grant type(s) {sorted(unknown)}"
            )
        _check_code_client(path, client)
    return directory


def _check_code_client(path: Path, client: Client) -> None:
    where = f"users file {path}: clients.{client.client_id}"
    if client.public and set(client.grant_types) - {AUTHORIZATION_CODE}:
        raise DirectoryError(
            f"{where}: a client without a secret is public and may only use "
            f"{AUTHORIZATION_CODE!r} (with PKCE)"
        )
    # A confidential client may use loopback redirects unregistered (RFC 8252 7.3, MCP
    # clients and CLIs); a public one has nothing else to prove who it is.
    if client.public and AUTHORIZATION_CODE in client.grant_types and not client.redirect_uris:
        raise DirectoryError(f"{where}: a public client's {AUTHORIZATION_CODE!r} needs "
                             "redirect_uris")
    for uri in client.redirect_uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
            raise DirectoryError(
                f"{where}.redirect_uris: {uri!r} must be an absolute http(s) URL without a "
                "fragment (RFC 6749 3.1.2)"
            )
