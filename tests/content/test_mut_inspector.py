"""ContentInspector edges found by mutation testing (scripts/mutate.py content)."""

from __future__ import annotations

from typing import Any

from pep.content import ContentInspector


def test_redacting_an_embeddings_request_walks_it_as_embeddings(
        inspector: ContentInspector) -> None:
    # In an embeddings request only model and input have their own rules: any other field,
    # even one called "messages", is client data whose every string (a "role" too) is masked.
    body: dict[str, Any] = {"model": "e", "input": "mail bob@example.org",
                            "messages": [{"role": "eve@example.org"}]}
    out, count = inspector.redact_request(body, "embeddings", {"email"})
    assert count == 2
    assert out == {"model": "e", "input": "mail [REDACTED:EMAIL]",
                   "messages": [{"role": "[REDACTED:EMAIL]"}]}
    # As a chat request, the same "messages" entry is a message and its role is not text.
    out, count = inspector.redact_request(body, "chat.completions", {"email"})
    assert count == 1
    assert out["messages"] == [{"role": "eve@example.org"}]
