"""What the router hands back: a result on success, ``RouteFailed`` on failure.

    Router.chat(...)       -> Completion | ChunkStream      raises RouteFailed
    Router.embeddings(...) -> Completion                     raises RouteFailed

``RouteFailed.error`` is the client-facing ``GatewayError`` (its class gives the status);
``attempts`` lists every try (as ``Served.attempts`` does on success) and ``served`` names
the last deployment tried, or is None when none was (an unknown model, a request refused
before any provider was asked, every circuit open). The audit records both.
"""

from __future__ import annotations

from typing import Any

from adapters.types import Served
from pep.errors import GatewayError


class RouteFailed(Exception):
    """The router could not get an answer; ``error`` is what the client is told."""

    def __init__(self, error: GatewayError, attempts: list[dict[str, Any]],
                 served: Served | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts
        self.served = served

    @classmethod
    def after(cls, error: GatewayError, attempts: list[dict[str, Any]]) -> RouteFailed:
        """The failure after ``attempts``: ``served`` is the last deployment really tried
        (a skipped one only when nothing was tried)."""
        tried = [a for a in attempts if a.get("outcome") != "skipped"] or attempts
        served = (Served(tried[-1]["provider"], tried[-1]["kind"], tried[-1]["model"], attempts)
                  if tried else None)
        return cls(error, attempts, served)
