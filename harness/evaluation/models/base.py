"""The contract between evaluation and a model: texts in, float32 vectors out, plus an identity.

``fingerprint`` is what the embedding cache and the result revision hang on; it must change
whenever anything that changes a vector changes (weights, pooling, normalisation, max length,
dtype, tokenizer special-token behaviour).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    name: str
    fingerprint: str
    similarity: str  # "cosine" | "dot"

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        """Embed ``prefix + text`` for each text; returns ``[len(texts), dim]`` float32."""
        ...

    def describe(self) -> dict[str, Any]:
        """Settings for provenance: what produced these vectors, in JSON-able form."""
        ...


def fingerprint_of(settings: dict[str, Any]) -> str:
    """A stable hash of a JSON-able settings dict."""
    blob = json.dumps(settings, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


class EncodeCounter:
    """Counts what actually reached the model, so tests can prove the cache avoided work."""

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def add(self, n: int) -> None:
        self.calls += 1
        self.texts += n


def model_facts(embedder: Embedder) -> dict[str, int | None]:
    """``embed_dim``, ``n_parameters`` and ``max_tokens`` of a loaded model, for model_meta.json.

    mteb's leaderboard tools read these from model_meta.json; left empty they showed a run's model as
    one of unknown size and dimension. Read from the loaded object (duck-typed, so any backend that
    holds a torch module under ``model`` is covered); None where a backend cannot know (an API model).
    An embedder whose model lives elsewhere (a device pool's, in its workers) hands over the facts
    its workers read, as ``facts``.
    """
    known = getattr(embedder, "facts", None)
    if isinstance(known, dict):
        return dict(known)
    model = getattr(embedder, "model", None)
    if model is None or not hasattr(model, "parameters"):
        return {"embed_dim": getattr(embedder, "dimensions", None), "n_parameters": None, "max_tokens": None}
    n_parameters = int(sum(p.numel() for p in model.parameters()))
    get_dim = getattr(model, "get_sentence_embedding_dimension", None)  # sentence-transformers
    config = getattr(model, "config", None)  # plain transformers (decoder backend)
    embed_dim = get_dim() if callable(get_dim) else getattr(config, "hidden_size", None)
    max_tokens = getattr(model, "max_seq_length", None) or getattr(embedder, "max_length", None)
    return {"embed_dim": int(embed_dim) if embed_dim else None, "n_parameters": n_parameters,
            "max_tokens": int(max_tokens) if max_tokens else None}
