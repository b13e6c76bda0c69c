"""Any OpenAI-compatible server by base URL: vLLM, Ollama, LM Studio, Groq, Mistral,
Together, DeepSeek, ... The wire format is OpenAI's, so this is the openai adapter with a
required ``base_url`` (e.g. ``http://localhost:11434/v1``) and an optional key."""

from __future__ import annotations

from typing import Any

from adapters.openai import (  # noqa: F401 - re-exported as this adapter's functions
    StreamTranslator,
    embeddings_from_provider,
    embeddings_to_provider,
    error_from_provider,
    from_provider,
    to_provider,
)


def validate(settings: Any) -> None:
    if not settings.base_url:
        raise ValueError("openai_compatible needs base_url (e.g. http://localhost:8000/v1)")


class OpenAICompatibleAdapter:
    """The openai adapter's functions with this module's ``validate``."""

    kind = "openai_compatible"
    validate = staticmethod(validate)
    to_provider = staticmethod(to_provider)
    from_provider = staticmethod(from_provider)
    stream_translator = StreamTranslator
    error_from_provider = staticmethod(error_from_provider)
    embeddings_to_provider = staticmethod(embeddings_to_provider)
    embeddings_from_provider = staticmethod(embeddings_from_provider)


ADAPTER = OpenAICompatibleAdapter()
