"""What an operator sees when something is wrong: one line naming the problem, exit code 2,
never a traceback -- from `regogate config check` before deploying and from `serve` itself."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pep.config import ConfigError, settings_from_mapping
from pep.defaults import embedded_mapping
from pep.policy.opa import OpaEngine
from tests.audit.test_crash import env, free_port

ROOT = Path(__file__).resolve().parents[2]
ISSUER = "https://idp.example.com"


def _config(tmp_path: Path, **changes: Any) -> Path:
    mapping = embedded_mapping(data_dir=tmp_path / "data", issuer=ISSUER, port=free_port())
    for dotted, value in changes.items():
        node = mapping
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / "regogate.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return path


def _regogate(*args: str, extra_env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pep", *args], capture_output=True, text=True,
                          env={**env(), **(extra_env or {})}, timeout=timeout, check=False)


def _one_line_error(out: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in out.stderr, out.stderr
    assert any(ln.startswith("error: ") and re.search(pattern, ln) for ln in lines), out.stderr


# -- config check ----------------------------------------------------------------------------

def test_config_check_accepts_a_good_config(tmp_path: Path) -> None:
    out = _regogate("config", "check", str(_config(tmp_path)))
    assert out.returncode == 0, out.stderr
    assert "valid" in out.stdout


def test_config_check_refuses_a_missing_policy_folder(tmp_path: Path) -> None:
    out = _regogate("config", "check", str(_config(tmp_path, policy__bundle="/nonexistent/pol")))
    _one_line_error(out, r"policy\.bundle: policy folder /nonexistent/pol does not exist")


def test_config_check_compiles_the_policy(tmp_path: Path) -> None:
    broken = tmp_path / "pol"
    broken.mkdir()
    (broken / "main.rego").write_text("package regogate\n\nthis is not rego {{{\n")
    out = _regogate("config", "check", str(_config(tmp_path, policy__bundle=str(broken))))
    _one_line_error(out, r"policy\.bundle: .* does not compile")


def test_config_check_refuses_plain_http_to_a_remote_issuer(tmp_path: Path) -> None:
    issuers: list[dict[str, Any]] = [{"issuer": "http://idp.example.com",
                                      "audiences": ["regogate"]}]
    out = _regogate("config", "check", str(_config(tmp_path, identity__issuers=issuers)))
    _one_line_error(out, r"uses plain http to a non-loopback host.*allow_insecure_http")
    issuers[0]["allow_insecure_http"] = True  # an explicit choice is honoured
    out = _regogate("config", "check", str(_config(tmp_path, identity__issuers=issuers)))
    assert out.returncode == 0, out.stderr


def test_a_nested_reference_is_refused_not_half_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RG_UNSET_A", raising=False)
    monkeypatch.setenv("RG_DATA_DIR", "/var/lib/rg")
    mapping = embedded_mapping(data_dir=Path("/tmp/x"), issuer=ISSUER)
    mapping["audit"]["store"] = "${RG_UNSET_A:-sqlite:///${RG_DATA_DIR}/audit.db}"
    with pytest.raises(ConfigError, match=r"audit\.store: nested reference"):
        settings_from_mapping(mapping)


def test_config_check_online_names_every_unreachable_dependency(tmp_path: Path) -> None:
    closed = free_port()
    issuers = [{"issuer": f"http://127.0.0.1:{closed}", "audiences": ["regogate"]}]
    path = _config(tmp_path, identity__issuers=issuers, policy__engine="opa",
                   policy__opa_url=f"http://127.0.0.1:{closed}",
                   cache__store=f"redis://127.0.0.1:{closed}/0")
    assert _regogate("config", "check", str(path)).returncode == 0  # offline: fine
    out = _regogate("config", "check", "--online", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert re.search(r"^error: identity\.issuers\[0\] .*", out.stderr, re.M), out.stderr
    assert re.search(r"^error: policy\.opa_url: OPA unreachable", out.stderr, re.M), out.stderr
    assert re.search(r"^error: cache\.store: cannot reach Redis", out.stderr, re.M), out.stderr


def test_config_check_online_passes_when_everything_answers(tmp_path: Path) -> None:
    from idp.testing import running_idp_sync

    with running_idp_sync(tmp_path / "idp") as idp:
        path = _config(tmp_path, identity__issuers=[{"issuer": idp.issuer,
                                                     "audiences": ["regogate"]}])
        out = _regogate("config", "check", "--online", str(path))
    assert out.returncode == 0, out.stderr
    assert "reachable" in out.stdout


def test_the_documented_yaml_examples_parse() -> None:
    bad = []
    for doc in sorted((ROOT / "docs").rglob("*.md")):
        for m in re.finditer(r"```ya?ml\n(.*?)```", doc.read_text(), re.S):
            try:
                yaml.safe_load(m.group(1))
            except yaml.YAMLError as exc:
                bad.append(f"{doc.name}: {str(exc).splitlines()[0]}")
    assert not bad


# -- serve -----------------------------------------------------------------------------------

def test_serve_with_a_broken_policy_says_so_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "pol"
    broken.mkdir()
    (broken / "main.rego").write_text("package regogate\n\nthis is not rego {{{\n")
    out = _regogate("serve", "--config", str(_config(tmp_path, policy__bundle=str(broken))))
    _one_line_error(out, r"cannot start: policy: ")
    assert len(out.stderr.strip().splitlines()) <= 3, out.stderr


def test_serve_refuses_idp_port_with_config(tmp_path: Path) -> None:
    out = _regogate("serve", "--config", str(_config(tmp_path)), "--idp-port", "9999")
    _one_line_error(out, r"--idp-port applies to the embedded defaults only")


def test_serve_refuses_a_dev_idp_it_did_not_start_with_other_keys(tmp_path: Path) -> None:
    idp_port = free_port()
    other = subprocess.Popen(
        [sys.executable, "-m", "idp", "serve", "--host", "127.0.0.1", "--port", str(idp_port),
         "--data-dir", str(tmp_path / "other")], env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(idp_port, other)
        out = _regogate("serve", "--data-dir", str(tmp_path / "mine"), "--port",
                        str(free_port()), "--idp-port", str(idp_port))
        _one_line_error(out, r"did not start is already listening .* does not publish the "
                             r"signing keys")
        # The same data directory publishes the same keys: reusing it is safe.
        from pep.cli import start_dev_idp

        issuer, proc = start_dev_idp(tmp_path / "other", idp_port)
        assert issuer == f"http://127.0.0.1:{idp_port}" and proc is None
    finally:
        other.terminate()
        other.wait(timeout=10)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the dev IdP exited"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/.well-known/openid-configuration",
                                   timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("dev IdP did not start")


async def test_an_unreachable_opa_sidecar_is_logged_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = OpaEngine(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="regogate.policy"):
        await engine.start()
        await engine.close()
    assert any("is not ready at start-up" in r.getMessage() for r in caplog.records)
