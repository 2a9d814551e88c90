"""OpenAI-compatible embedding endpoints (OpenAI, Azure, vLLM, Ollama, TEI) via the ``openai`` client.

The API key is read from the environment at call time and never stored in settings, provenance
or cache keys.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from harness.models.base import EncodeCounter, fingerprint_of
from harness.models.identity import resolve_openai_base_url


class OpenAIEmbedder:
    def __init__(
        self,
        name: str,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        batch_size: int = 256,
        dimensions: int | None = None,
        max_retries: int = 6,
        timeout: float = 60.0,
        content: str | None = None,
    ) -> None:
        from openai import OpenAI

        self.name = name
        self.model = model
        self.base_url = base_url or resolve_openai_base_url("OPENAI_BASE_URL")  # resolved once: part of the identity
        self.batch_size = batch_size
        self.dimensions = dimensions
        self.client = OpenAI(
            base_url=self.base_url, api_key=os.environ.get(api_key_env) or "unset", max_retries=max_retries, timeout=timeout
        )
        self.counter = EncodeCounter()
        self.similarity = "cosine"
        self.fingerprint = fingerprint_of({"backend": "openai", "content": content or f"openai:{model}@{self.base_url}",
                                           **self._settings()})

    def _settings(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "dimensions": self.dimensions}

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [prefix + t if (prefix + t).strip() else " " for t in texts[start : start + self.batch_size]]
            self.counter.add(len(chunk))
            kwargs: dict[str, Any] = {"model": self.model, "input": chunk}
            if self.dimensions:
                kwargs["dimensions"] = self.dimensions
            resp = self.client.embeddings.create(**kwargs)
            vectors.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        return np.asarray(vectors, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "batch_size": self.batch_size, **self._settings()}
