"""OpenAI-compatible embedding endpoints (OpenAI, Azure, vLLM, Ollama, TEI) via the ``openai`` client.

The API key is read from the environment at call time and never stored in settings, provenance
or cache keys.

Servers differ in what they return: llama.cpp serving a GGUF without a pooling type answers one
vector per *token*. The first text is therefore sent alone and its answer checked (one flat vector
of numbers per input) before any large chunk is sent, so a misconfigured server fails in one short
call with the fix, not after a 1,024-text chunk with a numpy shape error.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from harness.errors import InputError
from harness.evaluation.models.base import EncodeCounter, fingerprint_of
from harness.evaluation.models.identity import resolve_openai_base_url


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
        self._dim: int | None = None  # known once the server's first answer has been checked

    def _settings(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "dimensions": self.dimensions}

    def _check(self, data: list[Any], sent: int) -> list[list[float]]:
        """One flat vector per input, all of one length; anything else fails with what to fix."""
        where = self.base_url or "the OpenAI endpoint"
        if len(data) != sent:
            raise InputError(where, f"model {self.model}", f"the server returned {len(data)} embeddings for {sent} inputs",
                             "check that the server is an embeddings endpoint for this model")
        vectors = []
        for d in data:
            v = d.embedding
            if isinstance(v, list) and v and isinstance(v[0], list):
                raise InputError(
                    where, f"model {self.model}",
                    f"the server returned one vector per token ({len(v)} x {len(v[0])} for one text), not one per text",
                    "enable pooling on the server (llama.cpp: start it with a pooling type, e.g. llama-server "
                    "--embeddings --pooling mean, or a GGUF whose metadata sets <arch>.pooling_type)",
                )
            if not isinstance(v, list) or not v or not all(isinstance(x, (int, float)) for x in v[:8]):
                raise InputError(where, f"model {self.model}", f"the server returned an embedding of type {type(v).__name__}",
                                 "use an endpoint that returns float embeddings (encoding_format=float)")
            if self._dim is None:
                self._dim = len(v)
            elif len(v) != self._dim:
                raise InputError(where, f"model {self.model}", f"embedding length changed from {self._dim} to {len(v)}",
                                 "serve one model with one output dimension at this endpoint")
            vectors.append(v)
        return vectors

    def _create(self, chunk: list[str]) -> list[list[float]]:
        self.counter.add(len(chunk))
        kwargs: dict[str, Any] = {"model": self.model, "input": chunk}
        if self.dimensions:
            kwargs["dimensions"] = self.dimensions
        resp = self.client.embeddings.create(**kwargs)
        return self._check(sorted(resp.data, key=lambda d: d.index), len(chunk))

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        inputs = [prefix + t if (prefix + t).strip() else " " for t in texts]
        vectors: list[list[float]] = []
        start = 0
        if self._dim is None and inputs:  # probe: the server's first answer is checked on one text
            vectors.extend(self._create(inputs[:1]))
            start = 1
        for i in range(start, len(inputs), self.batch_size):
            vectors.extend(self._create(inputs[i : i + self.batch_size]))
        return np.asarray(vectors, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "batch_size": self.batch_size, **self._settings()}
