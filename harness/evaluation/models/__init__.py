"""Model loading: one code path from a matrix entry to an :class:`Embedder`.

Every model evaluation can score is a sentence-transformers model (local dir, hub id, or a
directory shipped in a Python package), a decoder LLM used with last-token pooling, or an
OpenAI-compatible embeddings endpoint.
"""

from harness.evaluation.models.base import Embedder
from harness.evaluation.models.loader import load_embedder

__all__ = ["Embedder", "load_embedder"]
