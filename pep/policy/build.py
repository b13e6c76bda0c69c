"""``regogate policy build``: the policy directory as an OPA bundle (``.tar.gz``).

Layout, as ``opa build`` writes it and ``opa run --bundle`` / the bundle plugin read it:

- every served module (``*.rego`` but not ``*_test.rego``) at its relative path;
- ``data.json``: all data documents merged (``data.yaml`` files converted), so OPA sees
  exactly the data document the embedded engine does;
- ``.manifest``: ``{"revision": <bundle revision>, "roots": [""]}``. The revision is the
  embedded engine's content hash (``pep.policy.bundle``), so an audit record names the same
  revision whichever engine decided, and OPA reports it (provenance, status, system.bundles);
- optionally ``.signatures.json`` (OPA bundle signing): a JWS over the list of files with
  their SHA-256 digests, signed with a private key given on the command line (RS256, PS256,
  ES256, ...). OPA verifies it with ``--verification-key`` (and ``--verification-key-id``
  when a key id is set).

JSON files are written canonically (sorted keys, no whitespace, no HTML escaping, U+2028 and
U+2029 escaped): OPA hashes JSON files over exactly that encoding of the parsed document, so
the digest of the bytes written is the digest OPA computes. The archive is reproducible
(sorted entries, zero mtimes, fixed owner and mode): the same policy gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pep.policy import bundle as bundle_mod

SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                      "ES512", "EdDSA")


class BuildError(Exception):
    """The bundle cannot be built (bad policy directory, unusable signing key)."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    revision: str
    files: tuple[str, ...]
    signed: bool


def canonical_json(value: Any) -> bytes:
    """Go's ``json.Marshal`` of the parsed document (sorted keys, compact, no HTML escape)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode("utf-8")


def _signature(files: dict[str, bytes], key_pem: bytes, algorithm: str, key_id: str | None) -> str:
    import jwt
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if algorithm not in SIGNING_ALGORITHMS:
        raise BuildError(f"signing algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}")
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise BuildError(f"signing key is not an unencrypted PEM private key: {exc}") from exc
    payload: dict[str, Any] = {
        "files": [
            {"name": name, "hash": hashlib.sha256(raw).hexdigest(), "algorithm": "SHA-256"}
            for name, raw in sorted(files.items())
        ]
    }
    headers: dict[str, Any] = {}
    if key_id:
        headers["kid"] = key_id
        payload["keyid"] = key_id  # deprecated claim, still read by older OPA versions
    try:
        return jwt.encode(payload, key, algorithm=algorithm, headers=headers or None)  # type: ignore[arg-type]
    except (jwt.PyJWTError, ValueError, TypeError, NotImplementedError) as exc:
        raise BuildError(f"cannot sign with {algorithm} and this key: {exc}") from exc


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)


def build(
    root: Path,
    out: Path,
    *,
    signing_key: bytes | None = None,
    signing_alg: str = "RS256",
    key_id: str | None = None,
) -> BuildResult:
    """Write the bundle of ``root`` to ``out``; raises BuildError (nothing half-written)."""
    try:
        loaded = bundle_mod.load(Path(root))
    except bundle_mod.BundleError as exc:
        raise BuildError(str(exc)) from exc
    files: dict[str, bytes] = {name: src.encode("utf-8") for name, src in loaded.modules.items()}
    try:
        files["data.json"] = canonical_json(loaded.data)
    except ValueError as exc:  # NaN/Infinity in YAML data: not JSON, OPA cannot load it
        raise BuildError(f"data is not representable as JSON: {exc}") from exc
    files[".manifest"] = canonical_json({"revision": loaded.revision, "roots": [""]})
    if signing_key is not None:
        token = _signature(files, signing_key, signing_alg, key_id)
        files[".signatures.json"] = canonical_json({"signatures": [token]})
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(_tar_gz(files))
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"cannot write {out}: {exc.strerror}") from exc
    return BuildResult(out, loaded.revision, tuple(sorted(files)), signing_key is not None)
