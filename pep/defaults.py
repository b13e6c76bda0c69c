"""The embedded defaults: dev IdP, embedded Rego on policies/, SQLite audit, mock provider.

Used when ``regogate serve`` runs without ``--config``. The dev IdP is a separate process
(``python -m idp``) whose tokens the gateway verifies through discovery + JWKS exactly like
any external issuer's; nothing here trusts it specially.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pep.config import Settings, settings_from_mapping

DEV_IDP_PORT = 9400
DEV_AUDIENCE = "regogate"
DEV_WORKSPACE_CLIENT = "regogate-workspace"


def repo_policies_dir() -> Path:
    """``policies/`` in the working directory, else the one shipped beside the package."""
    local = Path("policies")
    if local.is_dir():
        return local
    return Path(__file__).resolve().parent.parent / "policies"


def embedded_mapping(
    *, data_dir: Path, issuer: str, host: str = "127.0.0.1", port: int = 8080
) -> dict[str, Any]:
    return {
        "server": {"host": host, "port": port, "data_dir": str(data_dir)},
        "identity": {
            "issuers": [
                {
                    "issuer": issuer,
                    "audiences": [DEV_AUDIENCE],
                    "algorithms": ["RS256", "PS256", "ES256"],
                    "required_typ": "at+jwt",
                }
            ]
        },
        "policy": {"engine": "embedded", "bundle": str(repo_policies_dir())},
        # The dev IdP registers this public client (idp/users.yaml): browser sign-in to the
        # auditor workspace works out of the box (authorization code + PKCE).
        "workspace": {"client_id": DEV_WORKSPACE_CLIENT, "issuer_name": "the dev IdP"},
        "audit": {"store": f"sqlite:///{(data_dir / 'audit.db').resolve()}"},
        # Illustrative prices so the demo's cost figures (usage, audit report, budgets) are
        # not all zero; the mock provider itself is free.
        "usage": {"prices": {
            "mock-gpt": {"input_per_1m": 0.15, "output_per_1m": 0.60},
            "mock-gpt-eu": {"input_per_1m": 0.15, "output_per_1m": 0.60},
            "mock-gpt-admin": {"input_per_1m": 2.50, "output_per_1m": 10.00},
            "mock-embed": {"input_per_1m": 0.02, "output_per_1m": 0.0},
        }},
        # The demo MCP server (pep/mcp/demo.py), started on first use: /mcp/demo.
        "mcp": {"servers": {"demo": {"type": "demo",
                                     "description": "harmless demo tools; admin_report is "
                                                    "for admins only"}}},
        "providers": {"mock": {"kind": "mock"}},
        "models": {
            "mock-gpt": {"provider": "mock", "model": "mock-gpt",
                         "description": "offline mock chat model every dev user may use"},
            "mock-gpt-admin": {"provider": "mock", "model": "mock-gpt-admin",
                               "description": "offline mock chat model for admins only"},
            "mock-gpt-eu": {"provider": "mock", "model": "mock-gpt-eu",
                            "description": "offline mock chat model hosted in the EU"},
            "mock-embed": {"provider": "mock", "model": "mock-embed", "embeddings": True,
                           "description": "offline mock embeddings model"},
        },
    }


def embedded_settings(**kw: Any) -> Settings:
    return settings_from_mapping(embedded_mapping(**kw))
