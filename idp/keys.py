"""The dev IdP's signing keys: persisted, generated on first use, rotated with a grace period.

``<data-dir>/idp/keys.json`` (mode 0600) holds every key still published::

    {"version": 1, "active": "<kid>",
     "keys": [{"jwk": {...private JWK...}, "created": 1700000000, "retire_at": null}]}

The active key signs; a rotated-out key keeps ``retire_at`` and is published in JWKS until
then, so tokens it signed keep verifying while caches catch up. ``kid`` is the RFC 7638
thumbprint. Every reader re-reads the file when it changes (inode, size or mtime), so a
running server serves a key that ``python -m idp rotate`` added without a restart.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwk
from joserfc.jwk import ECKey, KeyParameters, KeySet, RSAKey

from idp.state import file_lock, idp_dir, write_private_json

log = logging.getLogger(__name__)

SUPPORTED_ALGS = ("RS256", "PS256", "ES256")
DEFAULT_ALG = "RS256"
DEFAULT_GRACE_S = 24 * 3600

SigningKey = RSAKey | ECKey


class KeyFileError(Exception):
    """The key file is unreadable or malformed (never regenerated silently: that would
    invalidate every token in flight without anyone noticing)."""


def generate_key(alg: str) -> SigningKey:
    params: KeyParameters = {"alg": alg, "use": "sig"}
    key: SigningKey
    if alg in ("RS256", "PS256"):
        key = RSAKey.generate_key(2048, parameters=params, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {SUPPORTED_ALGS}")
    key.ensure_kid()
    return key


@dataclass(frozen=True)
class KeySnapshot:
    """One consistent reading of the key file."""

    active: SigningKey
    published: tuple[SigningKey, ...]
    jwks: dict[str, Any]
    keyset: KeySet
    # When the earliest rotated-out key stops being published: the snapshot is stale then.
    valid_until: float


def _snapshot(doc: dict[str, Any], now: float) -> KeySnapshot:
    active_kid = doc["active"]
    published: list[SigningKey] = []
    active: SigningKey | None = None
    valid_until = float("inf")
    for entry in doc["keys"]:
        key = jwk.import_key(entry["jwk"])
        if not isinstance(key, (RSAKey, ECKey)) or not key.is_private:
            raise ValueError("keys must be private RSA or EC keys")
        retire_at = entry.get("retire_at")
        if key.kid == active_kid:
            active = key
        elif retire_at is not None and retire_at <= now:
            continue
        elif retire_at is not None:
            valid_until = min(valid_until, float(retire_at))
        published.append(key)
    if active is None:
        raise ValueError(f"active key {active_kid!r} is not in the file")
    public = [k.as_dict(private=False) for k in published]
    return KeySnapshot(
        active=active,
        published=tuple(published),
        jwks={"keys": public},
        keyset=KeySet(list(published)),
        valid_until=valid_until,
    )


class KeyRing:
    """File-backed signing keys; safe to share between threads (sync helper, server)."""

    def __init__(self, data_dir: Path, *, alg: str = DEFAULT_ALG) -> None:
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg!r}; use one of {SUPPORTED_ALGS}")
        self._dir = idp_dir(data_dir)
        self.path = self._dir / "keys.json"
        self._lock_path = self._dir / "keys.lock"
        self._alg = alg
        self._mutex = threading.Lock()
        self._signature: tuple[int, int, int] | None = None
        self._snapshot: KeySnapshot | None = None

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> KeySnapshot:
        """The current keys, re-read if the file changed; creates the first key if none."""
        with self._mutex:
            now = time.time()
            sig = self._stat()
            if sig is None:
                self._create_first()
                sig = self._stat()
            if (
                sig != self._signature
                or self._snapshot is None
                or now >= self._snapshot.valid_until
            ):
                self._snapshot = self._read(now)
                self._signature = sig
            return self._snapshot

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self, now: float) -> KeySnapshot:
        try:
            if stat.S_IMODE(os.stat(self.path).st_mode) & 0o077:
                # Copied or restored with a loose umask: private keys are for our eyes only.
                log.warning("tightening permissions of %s to 0600", self.path)
                os.chmod(self.path, 0o600)
            doc = json.loads(self.path.read_text())
            return _snapshot(doc, now)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {self.path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyFileError(
                f"key file {self.path} is malformed ({exc}); delete it to start over "
                "(every token it signed stops verifying)"
            ) from exc

    def _load_doc(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": 1, "active": None, "keys": []}
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"cannot read key file {self.path}: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyFileError(f"key file {self.path} is malformed")
        return doc

    # -- writing ---------------------------------------------------------------------------

    def _create_first(self) -> None:
        with file_lock(self._lock_path):
            if self.path.exists():  # another process won the race
                return
            key = generate_key(self._alg)
            doc = {"version": 1, "active": key.kid, "keys": [self._entry(key)]}
            write_private_json(self.path, doc)

    @staticmethod
    def _entry(key: SigningKey) -> dict[str, Any]:
        return {"jwk": key.as_dict(private=True), "created": int(time.time()), "retire_at": None}

    def rotate(
        self, *, alg: str | None = None, grace_s: int = DEFAULT_GRACE_S, remove_old: bool = False
    ) -> str:
        """Add a new active key; keep the previous active one published for ``grace_s``
        seconds and drop keys whose grace has ended (all of them with ``remove_old``).
        Returns the new key's ``kid``."""
        alg = alg or self._alg
        new = generate_key(alg)  # outside the lock: RSA generation takes a moment
        # The file lock alone serialises writers (flock also excludes other fds of this
        # process); taking the mutex here too would invert snapshot()'s lock order.
        with file_lock(self._lock_path):
            doc = self._load_doc()
            now = time.time()
            kept: list[dict[str, Any]] = []
            if not remove_old:
                for entry in doc["keys"]:
                    kid = entry.get("jwk", {}).get("kid")
                    if kid == doc.get("active"):
                        entry = {**entry, "retire_at": int(now + grace_s)}
                    elif entry.get("retire_at") is None or entry["retire_at"] <= now:
                        continue
                    if entry["retire_at"] > now:
                        kept.append(entry)
            doc = {"version": 1, "active": new.kid, "keys": [self._entry(new), *kept]}
            write_private_json(self.path, doc)
        with self._mutex:
            self._signature = None  # force a re-read even if mtime granularity hides it
        return str(new.kid)
