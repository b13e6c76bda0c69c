"""Docker does not run on the development machines, so the production topology is kept
correct by reading: the compose file's wiring and the gateway config it mounts are checked
here (the config must validate exactly as `regogate serve --config` would load it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pep.config import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_production_example_config_validates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    # docs/examples/production.yaml as the container sees it; test_compose_render.py runs the
    # same check with exactly the compose environment and the generated secret files.
    (tmp_path / "pw").write_text("example-not-a-secret\n")
    text = (ROOT / "docs" / "examples" / "production.yaml").read_text()
    config = tmp_path / "production.yaml"
    config.write_text(text.replace("/run/secrets/postgres-password", str(tmp_path / "pw")))
    monkeypatch.setenv("REGOGATE_OIDC_ISSUER", "https://idp.example.com/realms/corp")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-example-not-a-key")
    settings = load_settings(config)
    assert settings.policy.engine == "opa"
    assert settings.policy.opa_url == "http://opa:8181"
    assert settings.audit.store and settings.audit.store.startswith("postgresql://")
    assert settings.usage.store.startswith("redis://")
    assert settings.providers["openai"].api_key is not None
    assert "sk-example" not in repr(settings)  # secrets print as ***


def test_compose_wires_the_gateway_to_an_opa_sidecar_serving_policies_as_its_bundle() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"gateway", "opa", "postgres", "redis", "policy-bundle"}
    # policies/ is built into an OPA bundle (revision = content hash) by regogate itself ...
    builder = services["policy-bundle"]
    assert "./policies:/policies:ro" in builder["volumes"]
    assert builder["command"][:3] == ["policy", "build", "/policies"]
    out = builder["command"][builder["command"].index("-o") + 1]
    assert "policy-bundle:/bundle" in builder["volumes"]
    # ... and OPA serves exactly that file, once it is built.
    opa = services["opa"]
    assert opa["image"].startswith("openpolicyagent/opa:")
    assert "policy-bundle:/bundle:ro" in opa["volumes"]
    assert "--bundle" in opa["command"] and out in opa["command"]
    assert opa["depends_on"]["policy-bundle"]["condition"] == "service_completed_successfully"
    assert "policy-bundle" in compose["volumes"]
    assert "mkdir /bundle /var/lib/regogate && chown regogate /bundle" in (
        ROOT / "Dockerfile").read_text()
    # OPA logs its decisions (each entry's input.request.id is the gateway's request id).
    config_mount = next(v for v in opa["volumes"] if v.startswith("./deploy/opa-config.yaml:"))
    assert f"--config-file={config_mount.split(':')[1]}" in opa["command"]
    opa_config = yaml.safe_load((ROOT / "deploy" / "opa-config.yaml").read_text())
    assert opa_config["decision_logs"]["console"] is True
    gateway = services["gateway"]
    mounted = {v.rsplit(":", 2)[0]: v.rsplit(":", 2)[1] for v in gateway["volumes"]}
    assert (mounted["${REGOGATE_CONFIG:-./docs/examples/production.yaml}"]
            == "/etc/regogate/regogate.yaml")
    assert (ROOT / "docs" / "examples" / "production.yaml").exists()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"--config", "/etc/regogate/regogate.yaml"' in dockerfile
