"""Where the dev IdP keeps its files, and the running server's issuer.

Layout under the data directory (default ``.regogate`` in the current directory, or
``$REGOGATE_DATA_DIR``): ``idp/keys.json`` (private signing keys, mode 0600) and
``idp/state.json`` (issuer, users file and default audience the server last started with, so
``python -m idp token`` mints tokens that the running server's discovery document vouches
for, for the same users).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9400
DATA_DIR_ENV = "REGOGATE_DATA_DIR"


def resolve_data_dir(explicit: Path | str | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get(DATA_DIR_ENV) or ".regogate")


def idp_dir(data_dir: Path) -> Path:
    path = data_dir / "idp"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


class NonLoopbackError(ValueError):
    """Refusal to bind an address other machines could reach."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        # A name other than localhost could resolve anywhere: not provably loopback.
        return False


def issuer_for(host: str, port: int) -> str:
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def default_issuer() -> str:
    return issuer_for(DEFAULT_HOST, DEFAULT_PORT)


def write_private_json(path: Path, payload: dict[str, Any], mode: int = 0o600) -> None:
    """Atomically replace ``path``; the file never exists with looser permissions."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock so a CLI and a server never both create or rotate keys."""
    try:
        import fcntl
    except ImportError:  # not POSIX: a dev tool can live without the lock
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_state(data_dir: Path) -> dict[str, Any]:
    try:
        raw = json.loads((data_dir / "idp" / "state.json").read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def write_state(
    data_dir: Path, *, issuer: str, pid: int, users: Path | None, audience: str
) -> None:
    state = {
        "issuer": issuer,
        "pid": pid,
        "users": str(users.resolve()) if users else None,
        "audience": audience,
    }
    write_private_json(idp_dir(data_dir) / "state.json", state, 0o644)


def current_issuer(data_dir: Path) -> str:
    issuer = read_state(data_dir).get("issuer")
    return issuer if isinstance(issuer, str) and issuer else default_issuer()


def current_users_file(data_dir: Path) -> Path | None:
    """The users file the server was started with, so ``token`` knows the same users."""
    users = read_state(data_dir).get("users")
    return Path(users) if isinstance(users, str) and users else None


def current_audience(data_dir: Path) -> str | None:
    audience = read_state(data_dir).get("audience")
    return audience if isinstance(audience, str) and audience else None
