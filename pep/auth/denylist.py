"""Offboarding deny list: subjects or token ids, hot-reloaded from a file.

File format: one entry per line; ``#`` starts a comment; blank lines ignored.
    sub:<subject>     deny every token of this subject (any trusted issuer)
    jti:<token id>    deny one token
    <value>           deny a subject or token id equal to <value>
The file's (mtime, size, inode) is checked at most once a second, on the request path (a
``stat`` call; reading only when it changed), so an edit takes effect within a second with
no restart and no background task. A configured file that cannot be read fails closed:
every request gets 503 until it is readable again (an unreadable offboarding list must not
silently let offboarded people back in).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("regogate.auth.denylist")

CHECK_INTERVAL_S = 1.0


class DenyListUnavailable(Exception):
    pass


class DenyList:
    def __init__(self, path: Path | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._next_check = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._subjects: frozenset[str] = frozenset()
        self._token_ids: frozenset[str] = frozenset()
        self._error: str | None = None

    def _maybe_reload(self) -> None:
        now = self._clock()
        if now < self._next_check or self._path is None:
            return
        self._next_check = now + CHECK_INTERVAL_S
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp and self._error is None:
                return
            text = self._path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            if self._error is None:
                log.error("deny list %s unreadable (%s): failing closed", self._path, type(exc).__name__)
            self._error = f"unreadable: {type(exc).__name__}"
            return
        subjects: set[str] = set()
        token_ids: set[str] = set()
        for raw in text.splitlines():
            line = raw.partition("#")[0].strip()
            if not line:
                continue
            kind, sep, value = line.partition(":")
            if sep and kind == "sub":
                subjects.add(value.strip())
            elif sep and kind == "jti":
                token_ids.add(value.strip())
            else:
                subjects.add(line)
                token_ids.add(line)
        self._subjects, self._token_ids = frozenset(subjects), frozenset(token_ids)
        self._stamp, self._error = stamp, None
        log.info("deny list loaded: %d subjects, %d token ids", len(subjects), len(token_ids))

    def denied(self, sub: str, jti: str | None) -> bool:
        """True if denied; raises DenyListUnavailable when the configured file is unreadable."""
        self._maybe_reload()
        if self._error is not None:
            raise DenyListUnavailable(self._error)
        return sub in self._subjects or (jti is not None and jti in self._token_ids)

    def status(self) -> dict[str, object]:
        self._maybe_reload()
        return {
            "configured": self._path is not None,
            "ready": self._error is None,
            "entries": len(self._subjects | self._token_ids),
            "error": self._error,
        }
