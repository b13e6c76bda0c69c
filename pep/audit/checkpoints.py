"""Signed checkpoints: Ed25519 signatures over the chain head, like CloudTrail digest files.

A checkpoint says "at ``time`` the trail held ``seq`` records and its head hash was ``head``".
It links to the previous checkpoint (``prev_checkpoint``: SHA-256 of that checkpoint's
canonical payload) so checkpoints form their own chain. ``kind`` is ``checkpoint`` when records
were added since the last one, ``heartbeat`` when the trail was idle (so an auditor can tell
"nothing happened" from "the gateway stopped sealing"), ``start`` when a writer starts (the
gap before it is downtime, not missing heartbeats) and ``close`` at a clean shutdown.

Since format 1.1 a payload also carries ``interval_s`` (the longest the writer lets pass
between two checkpoints while it runs: the verifier's heartbeat cadence), ``users`` and
``users_root`` (the root of the per-user heads tree, see pep.audit.merkle).

The signature is Ed25519 over the canonical JSON of the payload (see records.canonical_json),
base64 (standard alphabet). A checkpoint file holds ``{"payload": {...}, "signature": "..."}``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pep.audit.merkle import root_of
from pep.audit.records import canonical_json

log = logging.getLogger("regogate.audit")

DEFAULT_KEY_NAME = "audit-signing-key.pem"
DEFAULT_PUBLIC_KEY_NAME = "audit-signing-key.pub.pem"


class SigningKeyError(Exception):
    """A signing or public key file is missing or unreadable."""


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyError(f"cannot load audit signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"audit signing key {path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read public key {path}: {exc.strerror}") from exc
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a private key file is accepted too: its public half is used
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{path} is not a PEM Ed25519 key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def ensure_default_key(data_dir: Path) -> Path:
    """Create the embedded default signing key on first use (0600) and its public half."""
    path = data_dir / DEFAULT_KEY_NAME
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # O_EXCL: two processes racing on first start must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    (data_dir / DEFAULT_PUBLIC_KEY_NAME).write_bytes(public_pem(key.public_key()))
    return path


def checkpoint_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload)).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    payload: dict[str, Any]
    signature: str

    @property
    def seq(self) -> int:
        return int(self.payload["seq"])

    @property
    def head(self) -> str:
        return str(self.payload["head"])

    @property
    def hash(self) -> str:
        return checkpoint_hash(self.payload)

    def to_json(self) -> bytes:
        return canonical_json({"payload": self.payload, "signature": self.signature})

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        doc = orjson.loads(data)
        return cls(payload=dict(doc["payload"]), signature=str(doc["signature"]))

    def verify(self, keys: dict[str, Ed25519PublicKey]) -> bool:
        key = keys.get(str(self.payload.get("key_id")))
        if key is None:
            return False
        try:
            key.verify(base64.b64decode(self.signature), canonical_json(self.payload))
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    def __init__(self, key: Ed25519PrivateKey, writer: str) -> None:
        self._key = key
        self.key_id = key_id(key.public_key())
        self.writer = writer

    def sign(
        self,
        *,
        kind: str,
        seq: int,
        head: str,
        prev_checkpoint: str | None,
        time: str,
        interval_s: float | None = None,
        user_heads: Mapping[str, str] | None = None,
    ) -> Checkpoint:
        payload: dict[str, Any] = {
            "v": 1,
            "kind": kind,
            "seq": seq,
            "head": head,
            "time": time,
            "prev_checkpoint": prev_checkpoint,
            "key_id": self.key_id,
            "writer": self.writer,
        }
        if interval_s is not None:
            payload["interval_s"] = interval_s
        if user_heads is not None:
            payload["users"] = len(user_heads)
            payload["users_root"] = root_of(user_heads)
        sig = base64.b64encode(self._key.sign(canonical_json(payload))).decode()
        return Checkpoint(payload, sig)


def write_checkpoint_file(directory: Path, cp: Checkpoint) -> None:
    """Write atomically (tmp + rename + fsync) so a crash never leaves half a checkpoint."""
    directory.mkdir(parents=True, exist_ok=True)
    t = str(cp.payload["time"]).replace(":", "").replace("-", "")
    name = f"checkpoint-{cp.seq:012d}-{t}-{cp.hash[:8]}.json"
    tmp = directory / (name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(cp.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / name)


def read_witness(path: Path) -> list[Checkpoint]:
    """Checkpoints from a witness: a checkpoint directory or an append-only JSON-lines log."""
    if path.is_dir():
        return read_checkpoint_dir(path)
    out: list[Checkpoint] = []
    for n, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(Checkpoint.from_json(line))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable checkpoint line %d of %s: %s", n, path, exc)
            out.append(Checkpoint(payload={"file": f"{path.name}:{n}", "seq": -1, "head": ""},
                                  signature=""))
    return out


def read_checkpoint_dir(directory: Path) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    for path in sorted(directory.glob("checkpoint-*.json")):
        try:
            out.append(Checkpoint.from_json(path.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # An unreadable checkpoint is reported by the verifier as a bad signature.
            log.warning("unreadable checkpoint %s: %s", path, exc)
            out.append(Checkpoint(payload={"file": path.name, "seq": -1, "head": ""}, signature=""))
    return out
