"""Signed checkpoints, key files and witness files, pinned down exactly (issue 18: the mutants
of pep/audit/checkpoints.py). A checkpoint is the auditor's proof of a head: what it signs,
how a signature is checked, how a key id is derived and how a witness file is read must not
drift, or a proof made by one version would not verify with another."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pep.audit.checkpoints import (
    DEFAULT_KEY_NAME,
    DEFAULT_PUBLIC_KEY_NAME,
    Checkpoint,
    Signer,
    SigningKeyError,
    checkpoint_hash,
    ensure_default_key,
    key_id,
    load_private_key,
    load_public_key,
    public_pem,
    read_checkpoint_dir,
    read_witness,
    write_checkpoint_file,
)
from pep.audit.merkle import root_of
from pep.audit.records import canonical_json

# A fixed key, so its id and signatures are known values.
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY_ID = "56475aa75463474c"
HEAD = "ab" * 32


def sign(**kw: object) -> Checkpoint:
    args: dict[str, object] = {"kind": "checkpoint", "seq": 7, "head": HEAD, "prev_checkpoint": None,
                               "time": "2025-01-02T03:04:05.000006Z"}
    args.update(kw)
    return Signer(KEY, "gw-1").sign(**args)  # type: ignore[arg-type]


def test_the_key_id_is_the_first_16_hex_digits_of_the_raw_public_keys_sha256() -> None:
    assert key_id(KEY.public_key()) == KEY_ID
    assert Signer(KEY, "gw-1").key_id == KEY_ID
    assert Signer(KEY, "gw-1").writer == "gw-1"


def test_a_checkpoint_signs_exactly_its_payload() -> None:
    cp = sign()
    assert cp.payload == {"v": 1, "kind": "checkpoint", "seq": 7, "head": HEAD, "time":
                          "2025-01-02T03:04:05.000006Z", "prev_checkpoint": None,
                          "key_id": KEY_ID, "writer": "gw-1"}
    KEY.public_key().verify(base64.b64decode(cp.signature, validate=True), canonical_json(cp.payload))
    assert (cp.seq, cp.head) == (7, HEAD)
    assert cp.hash == checkpoint_hash(cp.payload)
    assert checkpoint_hash({"b": 1, "a": [2]}) == (
        "63c9663de90ee828bbda6cd9acf02d0c653986c1ec25aa239920641edc9a1de5")


def test_a_checkpoint_with_a_cadence_and_user_heads_signs_them_too() -> None:
    heads = {'["i","alice"]': "11" * 32, '["i","bob"]': "22" * 32}
    cp = sign(kind="heartbeat", prev_checkpoint="cd" * 32, interval_s=30.0, user_heads=heads)
    assert cp.payload["interval_s"] == 30.0
    assert (cp.payload["users"], cp.payload["users_root"]) == (2, root_of(heads))
    assert (cp.payload["kind"], cp.payload["prev_checkpoint"]) == ("heartbeat", "cd" * 32)
    assert cp.verify({KEY_ID: KEY.public_key()})
    empty = sign(user_heads={})
    assert (empty.payload["users"], empty.payload["users_root"]) == (0, root_of({}))
    assert "interval_s" not in empty.payload


def test_a_signature_is_checked_against_the_key_the_payload_names() -> None:
    cp = sign()
    keys = {KEY_ID: KEY.public_key()}
    assert cp.verify(keys)
    other = Ed25519PrivateKey.from_private_bytes(bytes(32)).public_key()
    assert not cp.verify({KEY_ID: other})  # the named key does not match the signature
    assert not cp.verify({key_id(other): other, "None": KEY.public_key()})  # id not known
    changed = Checkpoint({**cp.payload, "seq": 8}, cp.signature)
    assert not changed.verify(keys)
    for bad in ("", "not base64!", "abc", base64.b64encode(b"x" * 64).decode()):
        assert not Checkpoint(cp.payload, bad).verify(keys), bad


def test_a_checkpoint_round_trips_through_its_json() -> None:
    cp = sign(user_heads={"u": "33" * 32})
    text = cp.to_json()
    assert text == canonical_json({"payload": cp.payload, "signature": cp.signature})
    assert Checkpoint.from_json(text) == cp
    assert Checkpoint.from_json(text.decode()) == cp


def test_a_checkpoint_file_is_named_by_seq_time_and_hash_and_written_whole(tmp_path: Path) -> None:
    cp = sign(seq=42)
    where = tmp_path / "a" / "b"  # created with its parents
    write_checkpoint_file(where, cp)
    write_checkpoint_file(where, cp)  # the directory exists: fine
    name = f"checkpoint-000000000042-20250102T030405.000006Z-{cp.hash[:8]}.json"
    assert sorted(p.name for p in where.iterdir()) == [name]  # no .tmp left behind
    assert (where / name).read_bytes() == cp.to_json()
    assert read_checkpoint_dir(where) == [cp]


def test_a_checkpoint_directory_is_read_in_file_name_order(tmp_path: Path) -> None:
    later, earlier = sign(seq=10), sign(seq=9)
    write_checkpoint_file(tmp_path, later)
    write_checkpoint_file(tmp_path, earlier)
    (tmp_path / "notes.json").write_bytes(b"{}")  # not a checkpoint file
    assert read_checkpoint_dir(tmp_path) == [earlier, later]
    assert read_witness(tmp_path) == [earlier, later]


def test_an_unreadable_checkpoint_file_is_kept_as_a_placeholder_and_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "checkpoint-1.json").write_bytes(b"{broken")
    (tmp_path / "checkpoint-2.json").write_bytes(b'{"payload": {}}')
    (tmp_path / "checkpoint-3.json").write_bytes(b'{"payload": 5, "signature": ""}')
    (tmp_path / "checkpoint-4.json").mkdir()  # unreadable: a directory
    with caplog.at_level(logging.WARNING, logger="regogate.audit"):
        cps = read_checkpoint_dir(tmp_path)
    assert [cp.payload for cp in cps] == [
        {"file": f"checkpoint-{n}.json", "seq": -1, "head": ""} for n in (1, 2, 3, 4)]
    assert all(cp.signature == "" for cp in cps)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4
    assert messages[0].startswith(f"unreadable checkpoint {tmp_path / 'checkpoint-1.json'}: ")


def test_a_witness_log_keeps_every_line_in_order_and_a_placeholder_for_a_bad_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b = sign(seq=1), sign(seq=2)
    path = tmp_path / "w.jsonl"
    path.write_bytes(a.to_json() + b"\n  \n" + b'{"payload": {}}\n[1]\n' + b.to_json() + b"\nnope")
    with caplog.at_level(logging.WARNING, logger="regogate.audit"):
        cps = read_witness(path)
    assert cps == [a,
                   Checkpoint({"file": "w.jsonl:3", "seq": -1, "head": ""}, ""),
                   Checkpoint({"file": "w.jsonl:4", "seq": -1, "head": ""}, ""),
                   b,
                   Checkpoint({"file": "w.jsonl:6", "seq": -1, "head": ""}, "")]
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == [
        f"unreadable checkpoint line {n} of {path}" for n in (3, 4, 6)]


def test_the_default_key_is_created_with_missing_parents_or_in_an_existing_dir(tmp_path: Path) -> None:
    nested = tmp_path / "x" / "y"
    path = ensure_default_key(nested)
    assert path == nested / DEFAULT_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    public = load_public_key(nested / DEFAULT_PUBLIC_KEY_NAME)
    assert key_id(public) == key_id(load_private_key(path).public_key())
    assert (nested / DEFAULT_PUBLIC_KEY_NAME).read_bytes() == public_pem(public)
    existing = tmp_path / "existing"
    existing.mkdir()
    assert ensure_default_key(existing) == existing / DEFAULT_KEY_NAME
    assert load_private_key(existing / DEFAULT_KEY_NAME)


def test_a_key_path_taken_by_another_file_is_never_written_through(tmp_path: Path) -> None:
    # What a second process that wins the race leaves: the name exists by the time we open it
    # (a dangling link exists as a name while Path.exists() says no). O_EXCL refuses it.
    target = tmp_path / "elsewhere.pem"
    (tmp_path / DEFAULT_KEY_NAME).symlink_to(target)
    assert ensure_default_key(tmp_path) == tmp_path / DEFAULT_KEY_NAME
    assert not target.exists()
    assert not (tmp_path / DEFAULT_PUBLIC_KEY_NAME).exists()


def test_the_public_pem_is_the_subject_public_key_info_form() -> None:
    pem = public_pem(KEY.public_key())
    assert pem == KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pem.startswith(b"-----BEGIN PUBLIC KEY-----\n")


def test_key_loading_errors_name_the_file_and_the_cause(tmp_path: Path) -> None:
    absent = tmp_path / "absent.pem"
    with pytest.raises(SigningKeyError) as err:
        load_private_key(absent)
    assert str(err.value).startswith(f"cannot load audit signing key {absent}: ")
    with pytest.raises(SigningKeyError) as err:
        load_public_key(absent)
    assert str(err.value) == f"cannot read public key {absent}: {os.strerror(2)}"
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a key")
    with pytest.raises(SigningKeyError) as err:
        load_private_key(junk)
    assert str(err.value).startswith(f"cannot load audit signing key {junk}: ")
    with pytest.raises(SigningKeyError) as err:
        load_public_key(junk)
    assert str(err.value) == f"{junk} is not a PEM Ed25519 key"
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(KEY.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(SigningKeyError) as err:
        load_private_key(encrypted)  # a password-protected key cannot be used unattended
    assert str(err.value).startswith(f"cannot load audit signing key {encrypted}: ")
    with pytest.raises(SigningKeyError) as err:
        load_public_key(encrypted)
    assert str(err.value) == f"{encrypted} is not a PEM Ed25519 key"


def test_a_private_key_file_serves_as_its_public_half(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    assert key_id(load_public_key(path)) == KEY_ID
    assert key_id(load_private_key(path).public_key()) == KEY_ID
    pub = tmp_path / "k.pub.pem"
    pub.write_bytes(public_pem(KEY.public_key()))
    assert key_id(load_public_key(pub)) == KEY_ID
    with pytest.raises(SigningKeyError) as err:
        load_private_key(pub)  # a public key cannot sign
    assert str(err.value).startswith(f"cannot load audit signing key {pub}: ")


def _cause(data: bytes) -> str:
    """What ``Checkpoint.from_json`` says about ``data`` (the cause a log line must carry)."""
    with pytest.raises((ValueError, KeyError, TypeError)) as err:
        Checkpoint.from_json(data)
    return str(err.value)


def test_an_unreadable_checkpoint_files_log_line_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    contents = {1: b"{broken", 2: b'{"payload": {}}', 3: b'{"payload": 5, "signature": ""}'}
    for n, data in contents.items():
        (tmp_path / f"checkpoint-{n}.json").write_bytes(data)
    (tmp_path / "checkpoint-4.json").mkdir()
    with pytest.raises(IsADirectoryError) as err:
        (tmp_path / "checkpoint-4.json").read_bytes()
    causes = [_cause(data) for data in contents.values()] + [str(err.value)]
    assert causes[1] == "'signature'"
    with caplog.at_level(logging.WARNING, logger="regogate.audit"):
        read_checkpoint_dir(tmp_path)
    assert [r.getMessage() for r in caplog.records] == [
        f"unreadable checkpoint {tmp_path / f'checkpoint-{n}.json'}: {cause}"
        for n, cause in zip((1, 2, 3, 4), causes, strict=True)]


def test_an_unreadable_witness_lines_log_line_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = [b'{"payload": {}}', b"[1]", b"nope"]
    path = tmp_path / "w.jsonl"
    path.write_bytes(sign(seq=1).to_json() + b"\n" + b"\n".join(bad))
    with caplog.at_level(logging.WARNING, logger="regogate.audit"):
        read_witness(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"unreadable checkpoint line {n} of {path}: {_cause(data)}"
        for n, data in zip((2, 3, 4), bad, strict=True)]
    assert _cause(bad[0]) == "'signature'"


def test_a_half_written_temp_file_left_by_a_crash_is_replaced_by_the_retried_write(
        tmp_path: Path) -> None:
    # The temp file is the final name plus ".tmp", beside it: a crash between the write and the
    # rename leaves it there, and writing the same checkpoint again consumes it.
    cp = sign(seq=5)
    name = f"checkpoint-000000000005-20250102T030405.000006Z-{cp.hash[:8]}.json"
    (tmp_path / (name + ".tmp")).write_bytes(cp.to_json()[:10])
    write_checkpoint_file(tmp_path, cp)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert read_checkpoint_dir(tmp_path) == [cp]
