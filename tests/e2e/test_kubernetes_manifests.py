"""deploy/kubernetes rendered (``kubectl kustomize``, or the same plain resources read here
when kubectl is absent) and validated offline against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields are errors); the gateway ConfigMap's config
passes ``regogate config check`` with the pod's environment and mounted files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def _render(tmp_path: Path) -> list[dict[str, Any]]:
    base = tmp_path / "kubernetes"
    shutil.copytree(BASE, base, ignore=shutil.ignore_patterns("secrets"))
    out = subprocess.run(["sh", str(ROOT / "deploy" / "init-secrets.sh"), str(base / "secrets"),
                          str(tmp_path / ".env")], capture_output=True, text=True, check=True)
    assert out.returncode == 0
    (base / "secrets" / "openai-api-key").write_text("sk-test-not-a-key")
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(base)], capture_output=True,
                             text=True, check=False)
        assert out.returncode == 0, out.stderr
        return [d for d in yaml.safe_load_all(out.stdout) if d]
    return _render_plain(base)


def _render_plain(base: Path) -> list[dict[str, Any]]:
    """What kustomize does with this base: namespace, labels, the secret generator."""
    k = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs = [d for r in k["resources"] for d in yaml.safe_load_all((base / r).read_text()) if d]
    import base64

    for gen in k.get("secretGenerator", []):
        data = {Path(f).name: base64.b64encode((base / f).read_bytes()).decode()
                for f in gen["files"]}
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": gen["name"]}, "data": data})
    for d in docs:
        if d["kind"] != "Namespace":
            d["metadata"]["namespace"] = k["namespace"]
        for pairs in k.get("labels", []):
            d["metadata"].setdefault("labels", {}).update(pairs["pairs"])
    return docs


@pytest.fixture
def rendered(tmp_path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _render(tmp_path)}


def test_every_manifest_validates_against_the_kubernetes_schemas(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for (kind, name), doc in rendered.items():
        if kind == "ServiceMonitor":
            continue  # a CRD: checked by shape below
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    monitor = rendered[("ServiceMonitor", "regogate")]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = rendered[("Service", "regogate")]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0] == {"port": "http", "path": "/metrics", "interval": "30s"}
    assert {d["metadata"].get("namespace") for k, d in rendered.items()
            if k[0] != "Namespace"} == {"regogate"}


def test_the_gateway_pod_is_probed_bounded_non_root_and_read_only(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pod = rendered[("Deployment", "regogate")]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    containers = {c["name"]: c for c in pod["containers"] + pod["initContainers"]}
    assert set(containers) == {"gateway", "opa", "policy-bundle"}
    for c in containers.values():
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    gw = containers["gateway"]
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    opa = containers["opa"]
    assert "--addr=127.0.0.1:8181" in opa["args"]  # the sidecar is reachable from the pod only
    bundle = containers["policy-bundle"]["args"]
    assert bundle[:2] == ["policy", "build"] and bundle[-1] in opa["args"]
    pdb, hpa = rendered[("PodDisruptionBudget", "regogate")], rendered[
        ("HorizontalPodAutoscaler", "regogate")]
    labels = rendered[("Deployment", "regogate")]["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["selector"]["matchLabels"] == labels
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"]


def test_the_configmap_config_checks_with_the_pods_environment_and_files(
    rendered: dict[tuple[str, str], dict[str, Any]], tmp_path: Path,
) -> None:
    import base64

    deployment = rendered[("Deployment", "regogate")]["spec"]["template"]["spec"]
    gw = next(c for c in deployment["containers"] if c["name"] == "gateway")
    mounts = {m["name"]: m["mountPath"] for m in gw["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    secret_dir = tmp_path / "secret-volume"
    secret_dir.mkdir()
    secret = rendered[("Secret", volumes["secrets"]["secret"]["secretName"])]
    for key, value in secret["data"].items():
        (secret_dir / key).write_bytes(base64.b64decode(value))
    config_map = rendered[("ConfigMap", volumes["config"]["configMap"]["name"])]
    config = config_map["data"]["regogate.yaml"].replace(mounts["secrets"], str(secret_dir))
    (tmp_path / "regogate.yaml").write_text(config)
    env: dict[str, str] = {"PATH": os.environ["PATH"]}
    for source in gw["envFrom"]:
        env.update(rendered[("ConfigMap", source["configMapRef"]["name"])]["data"])
    out = subprocess.run([sys.executable, "-m", "pep", "config", "check",
                          str(tmp_path / "regogate.yaml")], capture_output=True, text=True,
                         env=env, cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="compares with kubectl kustomize")
def test_the_plain_rendering_matches_kustomize(tmp_path: Path) -> None:
    ours = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
            for d in _render_plain_from_copy(tmp_path)}
    theirs = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
              for d in _render(tmp_path / "k")}
    assert ours == theirs


def _render_plain_from_copy(tmp_path: Path) -> list[dict[str, Any]]:
    base = tmp_path / "plain"
    shutil.copytree(BASE, base, ignore=shutil.ignore_patterns("secrets"))
    (base / "secrets").mkdir()
    for name in ("audit-signing-key.pem", "postgres-password", "openai-api-key"):
        (base / "secrets" / name).write_text("x")
    return _render_plain(base)


def test_the_data_and_witness_directories_are_on_the_pods_state_volume(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = rendered[("Deployment", "regogate")]["spec"]["template"]["spec"]
    gw = next(c for c in deployment["containers"] if c["name"] == "gateway")
    mounts = {m["mountPath"]: m["name"] for m in gw["volumeMounts"]}
    volumes = {v["name"] for v in deployment["volumes"]}
    config = yaml.safe_load(rendered[("ConfigMap", "regogate-config")]["data"]["regogate.yaml"])
    for path in (config["server"]["data_dir"], config["audit"]["checkpoint_dir"]):
        assert not path.startswith("/tmp")
        mount = next(m for m in mounts if path.startswith(m.rstrip("/") + "/"))
        assert mounts[mount] == "state" and "state" in volumes
