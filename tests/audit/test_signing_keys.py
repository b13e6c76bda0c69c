"""Audit signing keys and checkpoint files on disk: wrong, missing or unreadable key material
is a clear SigningKeyError (the gateway refuses to start, the verifier says why), never a
crash; the default key is created once, private (0600), with its public half beside it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pep.audit.checkpoints import (
    DEFAULT_KEY_NAME,
    DEFAULT_PUBLIC_KEY_NAME,
    Signer,
    SigningKeyError,
    ensure_default_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
    read_checkpoint_dir,
    write_checkpoint_file,
)


def ec_pem(private: bool) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_the_default_key_is_created_once_private_with_its_public_half(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = ensure_default_key(data)
    assert path == data / DEFAULT_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_bytes()
    assert ensure_default_key(data) == path and path.read_bytes() == first  # never replaced
    private = load_private_key(path)
    public = load_public_key(data / DEFAULT_PUBLIC_KEY_NAME)
    assert key_id(public) == key_id(private.public_key())
    assert len(key_id(public)) == 16


def test_a_private_key_file_serves_as_a_public_key(tmp_path: Path) -> None:
    path = ensure_default_key(tmp_path)
    assert key_id(load_public_key(path)) == key_id(load_private_key(path).public_key())


def test_a_missing_private_key_is_a_signing_key_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot load audit signing key"):
        load_private_key(tmp_path / "absent.pem")


def test_a_private_key_that_is_not_ed25519_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(ec_pem(private=True))
    with pytest.raises(SigningKeyError, match="is not an Ed25519 key"):
        load_private_key(path)


def test_a_missing_public_key_is_a_signing_key_error(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read public key"):
        load_public_key(tmp_path / "absent.pem")


def test_a_public_key_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pem"
    path.write_bytes(b"not a key")
    with pytest.raises(SigningKeyError, match="is not a PEM Ed25519 key"):
        load_public_key(path)


@pytest.mark.parametrize("private", [False, True])
def test_a_public_key_that_is_not_ed25519_is_refused(tmp_path: Path, private: bool) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(ec_pem(private))
    with pytest.raises(SigningKeyError, match="is not an Ed25519 public key"):
        load_public_key(path)


def test_checkpoint_files_round_trip_and_an_unreadable_one_fails_verification(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    signer = Signer(key, "r1")
    cp = signer.sign(kind="checkpoint", seq=3, head="ab" * 32, prev_checkpoint=None,
                     time="2025-01-01T00:00:00Z")
    write_checkpoint_file(tmp_path, cp)
    (tmp_path / "checkpoint-zzz.json").write_bytes(b"{broken")
    read = read_checkpoint_dir(tmp_path)
    assert len(read) == 2
    good, bad = read
    keys = {key_id(key.public_key()): key.public_key()}
    assert good.seq == 3 and good.verify(keys)
    assert bad.seq == -1 and not bad.verify(keys)
    assert public_pem(key.public_key()).startswith(b"-----BEGIN PUBLIC KEY-----")
