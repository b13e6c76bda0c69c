"""A bundle whose data the policy finds broken (data.regogate.config_errors) is refused once,
at load: start-up fails, a hot reload keeps the previous policy. Nothing is checked per
request."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pep.policy.embedded import EmbeddedEngine
from pep.policy.engine import PolicyError
from tests.policy.conftest import POLICIES, policy_input, write_bundle

LIMITS = Path("quota") / "limits" / "data.yaml"

# "week" is not a window: the limit would otherwise be silently ignored (fail open).
BROKEN_LIMITS = """\
groups:
  contractors:
    - name: contractors weekly tokens
      scope: user
      metric: tokens
      window: week
      max: 50000
"""


def _shipped_copy(tmp_path: Path) -> Path:
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    return root


def _edit(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_broken_quota_limit_fails_start_up_naming_the_limit(tmp_path: Path) -> None:
    root = _shipped_copy(tmp_path)
    _edit(root / LIMITS, BROKEN_LIMITS)
    engine = EmbeddedEngine(root, hot_reload=False)
    with pytest.raises(PolicyError, match="contractors weekly tokens") as info:
        await engine.start()
    assert info.value.code == "policy_invalid"


async def test_broken_quota_limit_edit_keeps_the_old_policy(tmp_path: Path) -> None:
    root = _shipped_copy(tmp_path)
    engine = EmbeddedEngine(root, hot_reload=False)
    await engine.start()
    before = engine.revision
    _edit(root / LIMITS, BROKEN_LIMITS)
    assert await engine.reload_if_changed() is False
    assert engine.revision == before
    _, detail = await engine.ready()
    assert "config_errors" in detail["last_reload_error"]


async def test_non_empty_config_errors_of_any_bundle_is_refused(tmp_path: Path) -> None:
    src = (
        "package regogate\nimport rego.v1\n"
        'decision := {"allow": true}\n'
        "config_errors contains m if some m in data.problems\n"
    )
    bundle = write_bundle(tmp_path / "b", {"p.rego": src}, {"problems": ["bad thing"]})
    with pytest.raises(PolicyError, match="bad thing"):
        await EmbeddedEngine(bundle, hot_reload=False).start()


async def test_empty_config_errors_loads(tmp_path: Path) -> None:
    src = (
        "package regogate\nimport rego.v1\n"
        'decision := {"allow": true}\n'
        "config_errors contains m if some m in data.problems\n"
    )
    engine = EmbeddedEngine(write_bundle(tmp_path / "b", {"p.rego": src}, {"problems": []}), hot_reload=False)
    await engine.start()
    assert (await engine.evaluate(policy_input())).allow is True
