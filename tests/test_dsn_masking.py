"""A store URL's password never prints (GUIDE.md 3.10): settings repr and str, the start-up
error of a store that cannot connect, ``config check --online`` and the log scanner all see
``user:***@``, while the stores still connect with the real URL."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pep.audit.settings import AuditSettings
from pep.defaults import embedded_mapping
from pep.settings_base import masked
from tests import logscan
from tests.audit.test_crash import env, free_port
from pep.config import settings_from_mapping
from tests.harness import deep_merge

SECRET = "hunter2-not-a-real-password"


def _dsn(port: int) -> str:
    return f"postgresql://regogate:{SECRET}@127.0.0.1:{port}/regogate"


def test_the_settings_tree_prints_store_urls_with_the_password_masked(tmp_path: Path) -> None:
    settings = settings_from_mapping(deep_merge(
        embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:9/"),
        {"audit": {"store": _dsn(5432)},
         "usage": {"store": f"redis://:{SECRET}@127.0.0.1:6379/0"},
         "cache": {"store": f"redis://default:{SECRET}@127.0.0.1:6379/1"},
         "responses": {"store": _dsn(5432)}}))
    for text in (repr(settings), str(settings), f"{settings.audit!r}", repr(settings.usage),
                 str(settings.cache), repr(settings.responses)):
        assert SECRET not in text
    assert "regogate:***@127.0.0.1:5432" in repr(settings.audit)
    # the libraries that connect get the URL itself
    assert str(settings.audit.store) == _dsn(5432) and settings.audit.store == _dsn(5432)
    assert settings.audit.model_dump()["store"] == _dsn(5432)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:p%40ss@h:5432/db", "postgresql://u:***@h:5432/db"),
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("sqlite:///tmp/a.db", "sqlite:///tmp/a.db"),
    ("postgresql://u:pw@[::1/db", "***"),
])
def test_masked_hides_only_the_password(url: str, shown: str) -> None:
    assert masked(url) == shown


def test_config_check_online_names_the_store_without_its_password(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(
        embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:9/"),
        {"audit": {"store": _dsn(free_port())}})))
    out = subprocess.run([sys.executable, "-m", "pep", "config", "check", "--online", str(cfg)],
                         env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "audit.store: cannot connect to PostgreSQL" in out.stderr
    assert SECRET not in out.stdout + out.stderr


def test_serve_with_an_unreachable_store_fails_in_one_line_without_the_password(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump(deep_merge(
        embedded_mapping(data_dir=tmp_path, issuer="http://127.0.0.1:9/", port=free_port()),
        {"audit": {"store": _dsn(free_port())}})))
    out = subprocess.run([sys.executable, "-m", "pep", "serve", "--config", str(cfg)],
                         env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert SECRET not in out.stdout + out.stderr
    assert "Traceback" not in out.stderr


def test_the_log_scanner_flags_a_url_password_and_passes_the_mask() -> None:
    assert logscan.hits(f"connecting to {_dsn(5432)}")
    assert not logscan.hits(f"connecting to {masked(_dsn(5432))}")
    assert not logscan.hits("connecting to postgresql://postgres@127.0.0.1:5432/test")
    logging.getLogger("regogate.test").info("store %r", AuditSettings(store=_dsn(5432)))
