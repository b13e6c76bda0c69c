"""Provider replies built from the golden fixtures in tests/adapters/fixtures/<provider>/.

Streams are cut into small uneven pieces so every parser sees events split across reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.fakes import eventstream
from tests.fakes.server import Reply

FIXTURES = Path(__file__).resolve().parent.parent / "adapters" / "fixtures"
JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}
EVENTSTREAM = {"content-type": "application/vnd.amazon.eventstream"}


def fixture(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def load(provider: str, name: str) -> Any:
    return orjson.loads(fixture(provider, name))


def pieces(data: bytes, size: int = 37) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def bedrock_stream_bytes(name: str) -> bytes:
    return b"".join(eventstream.event(e["event"], orjson.dumps(e["payload"]))
                    for e in load("bedrock", f"{name}.events.json"))


def plain(provider: str, name: str = "response") -> Reply:
    wire = "openai" if provider in ("openai", "azure_openai", "openai_compatible") else provider
    return Reply(200, fixture(wire, f"{name}.json"), dict(JSON))


def stream(provider: str, name: str = "stream") -> Reply:
    if provider == "bedrock":
        return Reply(200, headers=dict(EVENTSTREAM), chunks=pieces(bedrock_stream_bytes(name)))
    wire = "openai" if provider in ("openai", "azure_openai", "openai_compatible") else provider
    return Reply(200, headers=dict(SSE), chunks=pieces(fixture(wire, f"{name}.sse")))


def script(provider: str) -> Any:
    """Answer like the provider would in a tool round trip: a tool call first, then text
    once the request carries the tool's result. Streams when the request asks to."""

    def answer(rec: Any) -> Reply:
        body = orjson.loads(rec.body) if rec.body else {}
        has_result = b"temp_c" in rec.body
        is_stream = body.get("stream") or "stream" in rec.path.rsplit("/", 1)[-1]
        if provider == "bedrock":
            is_stream = rec.path.endswith("converse-stream")
        name = ("stream" if is_stream else "response") + ("" if has_result or not _has_tools(
            body) else "_tool")
        return stream(provider, name) if is_stream else plain(provider, name)

    return answer


def _has_tools(body: dict[str, Any]) -> bool:
    return bool(body.get("tools") or body.get("toolConfig"))
