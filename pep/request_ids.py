"""Request ids: a millisecond time prefix, then 96 random bits from the OS CSPRNG.

    req_<12 hex: Unix time in ms, never decreasing in a process><24 hex: 96 CSPRNG bits>

The random part is what makes an id unguessable, and it is unchanged: every one of its bits
comes from the kernel CSPRNG, none is reused or derived from another. The prefix (as in
UUIDv7, RFC 9562 section 5.7) only makes ids sort by the time they were made, so the audit
store's ``request_id`` index appends at its right edge instead of dirtying a random leaf per
record (docs/performance.md, issue 14). It tells the holder of an id when the request was
made, to the millisecond, which the client that received it knows anyway and the audit
record states. Within a process the prefix never goes backwards (a clock stepped back holds
the last value), so one process's ids sort in order of creation to the millisecond; ids made
in the same millisecond sort among themselves by their random part.

``secrets.token_hex`` calls ``os.urandom`` for each id; the ``getrandom`` call releases the
GIL, and on a busy gateway another thread (the audit writer) then holds it for its whole
switch interval before the event loop gets it back. Here one ``os.urandom`` call fills a pool
of ``POOL_IDS`` ids and each request takes the next slice, only fetched in bulk. The pool is
per process: a forked worker that inherited a pool discards it (pid check) so two processes
never hand out the same bytes.
"""

from __future__ import annotations

import os
import secrets
import threading
import time

PREFIX = "req_"
ID_BYTES = 12
TIME_HEX = 12  # 48 bits of milliseconds, as UUIDv7: enough until the year 10889
POOL_IDS = 256


class IdPool:
    __slots__ = ("_hex", "_last_ms", "_pid", "_pos")

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0
        self._pid = -1
        self._last_ms = 0

    def next_hex(self) -> str:
        """``2 * ID_BYTES`` hex digits of fresh CSPRNG output. Event-loop thread only (not
        locked); other threads use ``new_request_id``."""
        pos = self._pos
        if pos >= len(self._hex) or self._pid != os.getpid():
            self._hex = os.urandom(ID_BYTES * POOL_IDS).hex()
            self._pid = os.getpid()
            pos = 0
        end = pos + 2 * ID_BYTES
        self._pos = end
        return self._hex[pos:end]

    def next_id(self) -> str:
        """A request id (module docstring). Event-loop thread only, like ``next_hex``."""
        ms = time.time_ns() // 1_000_000
        if ms < self._last_ms:
            ms = self._last_ms  # the wall clock was stepped back: hold, never go backwards
        else:
            self._last_ms = ms
        return f"{PREFIX}{ms:012x}{self.next_hex()}"


_LOCK = threading.Lock()
_LAST_MS = [0]


def new_request_id() -> str:
    """The same format from any thread, without the pool (one ``os.urandom`` per id): for
    the rare paths that have no application at hand (a malformed request refused by the
    HTTP layer). Its prefix is held monotonic on its own, apart from the pools'."""
    rand = secrets.token_hex(ID_BYTES)
    with _LOCK:
        ms = max(time.time_ns() // 1_000_000, _LAST_MS[0])
        _LAST_MS[0] = ms
    return f"{PREFIX}{ms:012x}{rand}"
