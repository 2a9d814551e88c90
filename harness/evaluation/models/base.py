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
