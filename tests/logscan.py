"""No credential or request body in any log line (GUIDE.md 3.10), checked across the suite.

``tests/conftest.py`` installs ``SessionLogHandler`` on the root logger for the whole session
and, after every test, fails the test if a line it logged holds a secret. Gateway subprocesses
write their stderr to files that the tests owning them pass to ``assert_clean``.

A secret is: anything that looks like a JWT (every dev-IdP token does), a password inside a
URL (``postgresql://user:pw@host``: store URLs print as ``user:***@``), the provider keys the
test configurations use, and whatever a test registers (opaque tokens, request-body canaries).
"""

from __future__ import annotations

import logging
import re
import threading

# Compact JWS: base64url JSON header and payload ('{"' encodes as "eyJ").
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
# scheme://user:password@ with a password that is not the mask
_URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]*:(?!\*\*\*@)[^\s@/]+@")
PROVIDER_KEYS = frozenset({"sk-test-not-a-real-key", "sk-test-key-1234"})
_registered: set[str] = set()
_lock = threading.Lock()


def register(*secrets: str) -> None:
    """Treat these strings as secrets in every log line from now on (at least 8 characters:
    shorter ones would match innocent text)."""
    with _lock:
        _registered.update(s for s in secrets if len(s) >= 8)


def hits(text: str) -> list[str]:
    found = [m.group(0)[:24] + "..." for m in _JWT.finditer(text)]
    found += [m.group(0).split("://")[0] + "://<user>:<password>@" for m in
              _URL_PASSWORD.finditer(text)]
    with _lock:
        secrets = PROVIDER_KEYS | _registered
    found += [s[:12] + "..." for s in secrets if s in text]
    return found


def assert_clean(text: str, where: str) -> None:
    bad = [(line, hits(line)) for line in text.splitlines() if hits(line)]
    assert not bad, f"secrets in {where}: " + "; ".join(
        f"{h} in line {line[:120]!r}" for line, h in bad[:5])


class SessionLogHandler(logging.Handler):
    """Keeps the formatted lines (message and traceback) logged since ``begin``."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a broken record must not break the test it is in
            line = f"{record.name}: {record.msg!r} {record.args!r}"
        with _lock:
            self._lines.append(line)

    def begin(self) -> None:
        with _lock:
            self._lines = []

    def text(self) -> str:
        with _lock:
            return "\n".join(self._lines)
