"""``regogate policy build``: an OPA bundle whose .manifest revision is the content hash,
reproducible, optionally signed in OPA's ``.signatures.json`` format."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pep.policy import bundle as bundle_mod
from pep.policy.build import BuildError, build, canonical_json
from tests.opa_double import OpaDouble, oracle, require_oracle, signing
from tests.policy.conftest import POLICIES, policy_input
from tests.policy.test_tooling import run_cli


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(path.read_bytes()))) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _rewrite(path: Path, files: dict[str, bytes]) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue()))


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, bytes]:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def test_bundle_has_served_modules_merged_data_and_the_content_hash_revision(
    tmp_path: Path,
) -> None:
    result = build(POLICIES, tmp_path / "b.tar.gz")
    loaded = bundle_mod.load(POLICIES)
    files = _members(result.path)
    assert json.loads(files[".manifest"]) == {"revision": loaded.revision, "roots": [""]}
    assert result.revision == loaded.revision
    assert set(files) == set(loaded.modules) | {"data.json", ".manifest"}
    assert not any(name.endswith("_test.rego") for name in files)
    assert json.loads(files["data.json"]) == loaded.data


def test_build_is_reproducible(tmp_path: Path) -> None:
    a = build(POLICIES, tmp_path / "a.tar.gz").path.read_bytes()
    b = build(POLICIES, tmp_path / "b.tar.gz").path.read_bytes()
    assert a == b


def test_canonical_json_is_gos_encoding() -> None:
    # Go's json.Marshal without HTML escaping: sorted keys, compact, <>& kept, U+2028 escaped.
    assert canonical_json({"b": 1, "a": ["<x>&", "\u2028"]}) == (
        b'{"a":["<x>&","\\u2028"],"b":1}'
    )


async def test_opa_serves_the_built_bundle_and_reports_its_revision(tmp_path: Path) -> None:
    require_oracle()
    built = build(POLICIES, tmp_path / "b.tar.gz")
    server = OpaDouble(built.path)
    assert server.bundle.revision == built.revision
    await server.start()
    try:
        from pep.policy.opa import OpaEngine

        engine = OpaEngine(server.url, timeout_s=2.0)
        await engine.start()
        decision = await engine.evaluate(policy_input())
        await engine.close()
    finally:
        await server.stop()
    assert decision.allow is True and decision.policy_revision == built.revision


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_signed_bundle_verifies_with_the_public_key(tmp_path: Path, alg: str,
                                                   rsa_keys: tuple[bytes, bytes]) -> None:
    private, public = rsa_keys if alg != "ES256" else _pem(ec.generate_private_key(ec.SECP256R1()))
    out = build(POLICIES, tmp_path / "s.tar.gz", signing_key=private, signing_alg=alg,
                key_id="ci").path
    claims = signing.verify(oracle.load_bundle(out), public)
    names = {f["name"] for f in claims["files"]}
    assert names == set(_members(out)) - {".signatures.json"}
    assert claims["keyid"] == "ci"


def test_a_tampered_signed_bundle_is_refused(tmp_path: Path, rsa_keys: tuple[bytes, bytes]) -> None:
    out = build(POLICIES, tmp_path / "s.tar.gz", signing_key=rsa_keys[0]).path
    files = _members(out)
    files["main.rego"] += b"\n# changed after signing\n"
    _rewrite(out, files)
    with pytest.raises(signing.SignatureError, match="main.rego"):
        signing.verify(oracle.load_bundle(out), rsa_keys[1])


def test_a_file_added_after_signing_is_refused(tmp_path: Path,
                                               rsa_keys: tuple[bytes, bytes]) -> None:
    out = build(POLICIES, tmp_path / "s.tar.gz", signing_key=rsa_keys[0]).path
    files = _members(out)
    files["extra.rego"] = b"package extra\n"
    _rewrite(out, files)
    with pytest.raises(signing.SignatureError, match="extra.rego"):
        signing.verify(oracle.load_bundle(out), rsa_keys[1])


def test_a_bundle_signed_with_another_key_is_refused(tmp_path: Path,
                                                     rsa_keys: tuple[bytes, bytes]) -> None:
    other, _ = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    out = build(POLICIES, tmp_path / "s.tar.gz", signing_key=other).path
    with pytest.raises(signing.SignatureError, match="does not verify"):
        signing.verify(oracle.load_bundle(out), rsa_keys[1])


def test_an_unsigned_bundle_is_refused_when_a_key_is_required(
    tmp_path: Path, rsa_keys: tuple[bytes, bytes]
) -> None:
    out = build(POLICIES, tmp_path / "u.tar.gz").path
    with pytest.raises(signing.SignatureError, match="not signed"):
        signing.verify(oracle.load_bundle(out), rsa_keys[1])


def test_a_symmetric_or_unknown_algorithm_is_refused(tmp_path: Path,
                                                     rsa_keys: tuple[bytes, bytes]) -> None:
    with pytest.raises(BuildError, match="algorithm"):
        build(POLICIES, tmp_path / "x.tar.gz", signing_key=rsa_keys[0], signing_alg="HS256")
    assert not (tmp_path / "x.tar.gz").exists()


def test_cli_builds_and_refuses_a_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.tar.gz"
    assert run_cli("policy", "build", str(POLICIES), "-o", str(out)) == 0
    assert bundle_mod.load(POLICIES).revision in capsys.readouterr().out
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    assert run_cli("policy", "build", str(POLICIES), "-o", str(tmp_path / "x.tar.gz"),
                   "--signing-key", str(bad)) == 2
    assert "signing key" in capsys.readouterr().err
    assert not (tmp_path / "x.tar.gz").exists()


def test_cli_refuses_a_directory_without_modules(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run_cli("policy", "build", str(tmp_path / "empty"), "-o",
                   str(tmp_path / "x.tar.gz")) == 2


def test_the_sidecar_loads_a_signed_bundle_only_with_a_matching_signature(
    tmp_path: Path, rsa_keys: tuple[bytes, bytes]
) -> None:
    require_oracle()
    out = build(POLICIES, tmp_path / "s.tar.gz", signing_key=rsa_keys[0]).path
    server = OpaDouble(out, verification_key=rsa_keys[1])  # as opa run --verification-key
    assert server.bundle.revision == bundle_mod.load(POLICIES).revision
    files = _members(out)
    files["data.json"] = files["data.json"].replace(b'"gateway"', b'"gateway2"')
    _rewrite(out, files)
    with pytest.raises(signing.SignatureError, match="data.json"):
        OpaDouble(out, verification_key=rsa_keys[1])
