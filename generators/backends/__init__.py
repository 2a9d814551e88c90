"""LLM backends: an OpenAI-compatible endpoint through the official client, or a local transformers model."""

from __future__ import annotations

from generators.backends.base import Backend, CallOutcome, ChatRequest

__all__ = ["Backend", "CallOutcome", "ChatRequest", "make_backend"]


def make_backend(config: object) -> Backend:
    """Build the backend a config names; heavy imports (torch, openai) happen only for the one used."""
    from generators.config import LocalBackendConfig, OpenAIBackendConfig

    if isinstance(config, OpenAIBackendConfig):
        from generators.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(config)
    if isinstance(config, LocalBackendConfig):
        from generators.backends.local_backend import LocalBackend

        return LocalBackend(config)
    raise TypeError(f"unknown backend config {type(config).__name__}")
