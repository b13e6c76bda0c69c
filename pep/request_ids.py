"""Request ids: 96 random bits from the OS CSPRNG, hex-encoded, without a syscall per id.

``secrets.token_hex`` calls ``os.urandom`` for each id; the ``getrandom`` call releases the
GIL, and on a busy gateway another thread (the audit writer) then holds it for its whole
switch interval before the event loop gets it back. Here one ``os.urandom`` call fills a pool
of ``POOL_IDS`` ids and each request takes the next slice, so ids stay exactly as
unguessable (every bit still comes from the kernel CSPRNG, none is reused or derived from
another), only fetched in bulk. The pool is per process: a forked worker that inherited a
pool discards it (pid check) so two processes never hand out the same bytes.
"""

from __future__ import annotations

import os

ID_BYTES = 12
POOL_IDS = 256


class IdPool:
    __slots__ = ("_hex", "_pid", "_pos")

    def __init__(self) -> None:
        self._hex = ""
        self._pos = 0
        self._pid = -1

    def next_hex(self) -> str:
        """``2 * ID_BYTES`` hex digits of fresh CSPRNG output. Event-loop thread only (not
        locked); other threads use ``secrets`` directly."""
        pos = self._pos
        if pos >= len(self._hex) or self._pid != os.getpid():
            self._hex = os.urandom(ID_BYTES * POOL_IDS).hex()
            self._pid = os.getpid()
            pos = 0
        end = pos + 2 * ID_BYTES
        self._pos = end
        return self._hex[pos:end]
