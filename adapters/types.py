"""Types shared by every provider adapter.

The canonical request and response format inside regogate is OpenAI Chat Completions
(request body, ``chat.completion`` objects and ``chat.completion.chunk`` stream chunks, as
plain dicts). Inbound Anthropic requests are converted to it; each adapter translates it to
and from its provider's wire format with pure functions. The router (pep.routing) owns I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    def to_openai(self) -> dict[str, int]:
        """The OpenAI ``usage`` object every adapter reports in the canonical response."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}


@dataclass(slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool = False


@dataclass(slots=True)
class Served:
    """Which deployment actually answered (recorded in the audit)."""

    provider: str  # provider name from config
    kind: str  # adapter kind
    model: str  # upstream model id
    attempts: list[dict[str, Any]] = field(default_factory=list)


class StreamTranslator(Protocol):
    """Per-request, stateful: provider stream bytes in, OpenAI chunk dicts out."""

    usage: Usage | None

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


@dataclass(slots=True)
class Completion:
    """A whole answer: an OpenAI ``chat.completion`` (or embeddings list) body."""

    body: dict[str, Any]
    usage: Usage
    served: Served


@dataclass(slots=True, frozen=True)
class Target:
    """One deployment as an adapter sees it (built once per model at router start)."""

    provider: str  # provider name from config
    settings: Any  # pep.routing.settings.ProviderSettings (Any: adapters stay import-light)
    model: str  # upstream model id / deployment name
    client_model: str  # the name the client asked for; used in translated responses
    state: Any = None  # adapter-specific, built once by the adapter's ``prepare`` (if any)
