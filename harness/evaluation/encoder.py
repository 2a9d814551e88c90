"""The bridge between mteb's encoder protocol and our embedders, through the embedding cache.

mteb calls ``encode(DataLoader, task_metadata=..., prompt_type=...)`` once per task, split, subset
and side. This encoder resolves the exact prefix for that call, looks every text up in the shared
cache, and sends only the misses (deduplicated) to the model. That is what makes a warm re-run
free and lets one corpus serve any number of query instructions.

The misses go to the model in chunks of :func:`miss_batch` texts; an embedder that spreads chunks
over several devices (:class:`harness.evaluation.device_pool.DevicePool`) encodes them side by side
and hands each back as it finishes. Either way this process alone writes the cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from tqdm.auto import tqdm
from mteb.models.model_meta import ModelMeta, ScoringFunction

from harness.evaluation.embedding_cache import CacheWriter, EmbeddingCache, cache_key
from harness.evaluation.instructions import InstructionPolicy
from harness.evaluation.models.base import Embedder, model_facts

_MISS_BATCH = 1024  # texts per model call + cache transaction: bounds what a kill -9 can lose (two calls' worth in flight)


def miss_batch() -> int:
    """Texts per model call + cache transaction (``HARNESS_MISS_BATCH`` overrides; tests use small ones)."""
    return max(1, int(os.environ.get("HARNESS_MISS_BATCH") or _MISS_BATCH))


def encoded_chunks(embedder: Embedder, chunks: list[list[str]], prefix: str) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, vectors)`` of every chunk: in order, one model call each; or, for an embedder with
    ``embed_chunks`` (a device pool), in the order its devices finish them."""
    spread = getattr(embedder, "embed_chunks", None)
    if spread is not None:
        return spread(chunks, prefix)
    return ((i, embedder.embed(chunk, prefix)) for i, chunk in enumerate(chunks))


def build_model_meta(name: str, revision: str, embedder: Embedder) -> ModelMeta:
    similarity = ScoringFunction.DOT_PRODUCT if embedder.similarity == "dot" else ScoringFunction.COSINE
    return ModelMeta.create_empty(
        overwrites={"name": name, "revision": revision, "similarity_fn_name": similarity, **model_facts(embedder)}
    )


class CachedEncoder(AbsEncoder):
    def __init__(self, embedder: Embedder, cache: EmbeddingCache, policy: InstructionPolicy, meta: ModelMeta,
                 show_progress: bool = True) -> None:
        self.embedder = embedder
        self.cache = cache
        self.policy = policy
        self.mteb_model_meta = meta
        self.show_progress = show_progress
        self.prefixes_seen: set[str] = set()

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str, prompt_type: Any = None,
               **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        prefix = self.policy.prefix(task_metadata, prompt_type)
        self.prefixes_seen.add(prefix)
        return self.embed_texts(texts, prefix, label=f"{task_metadata.name}/{hf_split}/{hf_subset}/{getattr(prompt_type, 'value', prompt_type) or 'all'}")

    def embed_texts(self, texts: list[str], prefix: str, label: str = "") -> np.ndarray:
        fp = self.embedder.fingerprint
        keys = [cache_key(fp, prefix, t) for t in texts]
        found = self.cache.get_many(keys)
        missing: dict[bytes, str] = {}
        for k, t in zip(keys, texts):
            if k not in found and k not in missing:
                missing[k] = t
        # Longest first across all misses, so each model call holds texts of similar length (the
        # embedder sorts again by tokens inside a call); the cache write of one call overlaps the next.
        # On a device pool the chunks go out in this order too: the longest first, the shortest last.
        items = sorted(missing.items(), key=lambda kv: -len(kv[1]))
        bar = tqdm(total=len(items), desc=f"encode {label}", unit="text", disable=not self.show_progress or not items,
                   leave=False)
        step = miss_batch()
        chunks = [items[start : start + step] for start in range(0, len(items), step)]
        with CacheWriter(self.cache) as writer, \
                closing(encoded_chunks(self.embedder, [[t for _, t in c] for c in chunks], prefix)) as results:
            for index, vecs in results:
                chunk = chunks[index]
                writer.put([k for k, _ in chunk], vecs)
                for (k, _), v in zip(chunk, vecs):
                    found[k] = v
                bar.update(len(chunk))
        bar.close()
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
