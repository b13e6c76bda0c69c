"""Embedded engine hot reload: an edit takes effect, a broken edit keeps the old policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pep.policy.embedded import EmbeddedEngine
from pep.policy.engine import PolicyError
from tests.policy.conftest import policy_input, write_bundle

HEAD = "package regogate\nimport rego.v1\n"
ALLOW = HEAD + 'decision := {"allow": true}\n'
DENY = HEAD + 'decision := {"allow": false, "reasons": [{"code": "closed"}]}\n'


def _edit(path: Path, text: str) -> None:
    path.write_text(text)
    # Make the change visible even on filesystems with coarse mtimes.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def _engine(tmp_path: Path) -> EmbeddedEngine:
    engine = EmbeddedEngine(write_bundle(tmp_path / "b", {"p.rego": ALLOW}), hot_reload=False)
    await engine.start()
    return engine


async def test_edit_takes_effect_without_restart(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    before = engine.revision
    _edit(tmp_path / "b" / "p.rego", DENY)
    assert await engine.reload_if_changed() is True
    decision = await engine.evaluate(policy_input())
    assert decision.allow is False
    assert engine.revision != before
    assert decision.policy_revision == engine.revision


async def test_broken_edit_keeps_old_policy_and_is_reported(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    before = engine.revision
    _edit(tmp_path / "b" / "p.rego", HEAD + "decision := {\n")
    assert await engine.reload_if_changed() is False
    assert (await engine.evaluate(policy_input())).allow is True
    assert engine.revision == before
    ok, detail = await engine.ready()
    assert ok is True
    assert detail["reload_errors"] == 1
    assert "p.rego" in detail["last_reload_error"]


async def test_fixing_a_broken_edit_clears_the_error(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    _edit(tmp_path / "b" / "p.rego", HEAD + "decision := {\n")
    await engine.reload_if_changed()
    _edit(tmp_path / "b" / "p.rego", DENY)
    assert await engine.reload_if_changed() is True
    _, detail = await engine.ready()
    assert "last_reload_error" not in detail


async def test_edit_that_removes_the_decision_rule_is_refused(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    _edit(tmp_path / "b" / "p.rego", HEAD + "other := 1\n")
    assert await engine.reload_if_changed() is False
    assert (await engine.evaluate(policy_input())).allow is True


async def test_data_edit_is_picked_up(tmp_path: Path) -> None:
    src = HEAD + 'decision := {"allow": input.user.sub in data.users}\n'
    bundle = write_bundle(tmp_path / "b", {"p.rego": src}, {"users": ["bob"]})
    engine = EmbeddedEngine(bundle, hot_reload=False)
    await engine.start()
    assert (await engine.evaluate(policy_input("alice"))).allow is False
    _edit(bundle / "data.json", '{"users": ["alice"]}')
    assert await engine.reload_if_changed() is True
    assert (await engine.evaluate(policy_input("alice"))).allow is True


async def test_unchanged_bundle_is_not_recompiled(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    assert await engine.reload_if_changed() is False
    assert engine.reloads == 0


async def test_background_watcher_swaps_the_policy(tmp_path: Path) -> None:
    import asyncio

    bundle = write_bundle(tmp_path / "b", {"p.rego": ALLOW})
    engine = EmbeddedEngine(bundle, hot_reload=True, reload_interval_s=0.02)
    await engine.start()
    try:
        _edit(bundle / "p.rego", DENY)
        for _ in range(250):
            if engine.reloads:
                break
            await asyncio.sleep(0.02)
        assert (await engine.evaluate(policy_input())).allow is False
    finally:
        await engine.close()


async def test_broken_bundle_at_start_is_fatal(tmp_path: Path) -> None:
    engine = EmbeddedEngine(
        write_bundle(tmp_path / "b", {"p.rego": HEAD + "x := \n"}), hot_reload=False
    )
    with pytest.raises(PolicyError) as info:
        await engine.start()
    assert "p.rego" in str(info.value)


async def test_bundle_without_decision_rule_is_fatal(tmp_path: Path) -> None:
    engine = EmbeddedEngine(
        write_bundle(tmp_path / "b", {"p.rego": HEAD + "x := 1\n"}), hot_reload=False
    )
    with pytest.raises(PolicyError, match="data.regogate.decision"):
        await engine.start()
