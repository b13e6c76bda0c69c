"""Server-sent events framing (WHATWG HTML, "Server-sent events", 9.2.6), both directions.

Incremental: bytes arrive in arbitrary pieces; an event is dispatched on a blank line.
CRLF and LF line endings are accepted (every provider we speak uses one of them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str | None
    data: str


class SSEParser:
    """Feed raw bytes, get complete events; ``finish`` flushes a last unterminated event."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[SSEEvent]:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            # A CR at the very end may be half of a CRLF split across reads: keep it.
            keep_cr = buf.endswith(b"\r")
            buf = (buf[:-1] if keep_cr else buf).replace(b"\r\n", b"\n") + (
                b"\r" if keep_cr else b""
            )
        # Everything up to the last blank line is whole events: decoded in one call (a
        # multi-byte character cannot straddle a newline), the rest waits for more bytes.
        end = buf.rfind(b"\n\n")
        if end < 0:
            self._buf = buf
            return []
        self._buf = buf[end + 2 :]
        events: list[SSEEvent] = []
        for block in buf[:end].decode("utf-8").split("\n\n"):
            if block.startswith("data: ") and "\n" not in block:
                # The common event, one ``data:`` line: what _parse_block makes of it.
                events.append(SSEEvent(None, block[6:]))
                continue
            ev = _parse_block(block)
            if ev is not None:
                events.append(ev)
        return events

    def finish(self) -> list[SSEEvent]:
        rest, self._buf = self._buf.strip(b"\r\n"), b""
        if not rest:
            return []
        ev = _parse_block(rest.decode("utf-8"))
        return [ev] if ev is not None else []


def _parse_block(block: str) -> SSEEvent | None:
    event: str | None = None
    data: list[str] = []
    for raw in block.split("\n"):
        if not raw or raw.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = raw.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if not data and event is None:
        return None
    return SSEEvent(event, "\n".join(data))


def encode(data: bytes | str, event: str | None = None) -> bytes:
    """One event; ``data`` must not contain newlines (JSON from orjson never does)."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if event is None:
        return b"data: " + payload + b"\n\n"
    return b"event: " + event.encode("ascii") + b"\ndata: " + payload + b"\n\n"
