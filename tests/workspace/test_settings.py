"""The workspace settings slice: refused when wrong, and what `config check` says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pep.config import ConfigError, settings_from_mapping
from pep.configcheck import offline_problems
from pep.defaults import embedded_mapping
from tests.harness import deep_merge


def _settings(tmp_path: Path, **workspace: Any) -> Any:
    base = embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:9400")
    return settings_from_mapping(deep_merge(base, {"workspace": workspace}))


def test_the_embedded_defaults_sign_in_with_the_dev_idp(tmp_path: Path) -> None:
    ws = _settings(tmp_path).workspace
    assert ws.client_id == "regogate-workspace" and ws.client_secret is None
    assert ws.session_store == "memory"


@pytest.mark.parametrize(("workspace", "message"), [
    ({"issuer": "https://not-trusted.example"}, "workspace.issuer"),
    ({"scope": "profile email"}, "openid"),
    ({"redirect_uri": "gw.example.com/cb"}, "redirect_uri"),
    ({"session_store": "postgresql://x"}, "session_store"),
    ({"session_idle_s": 0}, "session_idle_s"),
])
def test_a_wrong_workspace_setting_is_refused_naming_the_key(
    tmp_path: Path, workspace: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, **workspace)


def test_config_check_flags_a_missing_redirect_uri_off_loopback(tmp_path: Path) -> None:
    public = deep_merge(embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:9400"),
                        {"server": {"host": "0.0.0.0"}})
    settings = settings_from_mapping(public)
    assert any("workspace.redirect_uri" in p for p in offline_problems(settings))
    fixed = settings_from_mapping(deep_merge(public, {"workspace": {
        "redirect_uri": "https://gw.example.com/audit/callback"}}))
    assert not any("workspace" in p for p in offline_problems(fixed))
    assert not any("workspace" in p for p in offline_problems(_settings(tmp_path)))
