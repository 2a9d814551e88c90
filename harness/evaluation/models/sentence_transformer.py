"""sentence-transformers models, encoded exactly as mteb's own wrapper encodes them.

Parity with the official leaderboard depends on doing nothing clever here: the whole list goes
to ``SentenceTransformer.encode`` (which sorts by length and batches), the model's own modules
decide pooling and normalisation, and a prompt is passed as ``prompt=`` so models whose pooling
excludes prompt tokens keep doing so. ``pooling`` (``mean`` or ``cls``), when the matrix sets it,
replaces the mode of the model's own Pooling module; ``last-token`` never reaches this backend
(the planner routes it to the decoder path, which guarantees the EOS).

The one thing done differently from ``encode`` is *which texts share a forward pass*: the model's
own ``preprocess`` and forward run over token-budget batches of texts sorted by their exact token
count (``encode`` sorts by characters and cuts fixed counts), the next batch tokenised by a worker
thread meanwhile (:mod:`.batching`). A vector does not depend on its batch beyond floating-point
noise. Models whose first module is not a plain Transformer, or that flatten inputs themselves,
go to ``encode`` unchanged. A trainer export holding a LoRA adapter is loaded on its exact recorded
base and the adapter merged (:mod:`.adapters`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluation.models.adapters import adapter_view, exact_base_dir, is_adapter_dir, merge_lora
from harness.evaluation.models.base import EncodeCounter, fingerprint_of
from harness.evaluation.models.batching import BatchPlan, default_token_budget, plan_batches, prefetch_depth, prefetched
from harness.evaluation.models.identity import model_identity
from harness.evaluation.models.reference import ModelReference
from modelload import model_loading

ST_CODE_VERSION = "2"  # bump when this wrapper changes what a vector is: invalidates cached vectors
_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


class SentenceTransformerEmbedder:
    def __init__(
        self,
        name: str,
        ref: ModelReference,
        *,
        content: str | None = None,
        revision: str | None = None,
        dtype: str = "float32",
        max_length: int | None = None,
        batch_size: int = 32,
        normalize: bool | None = None,
        pooling: str | None = None,
        device: str | None = None,
        cache_dir: Path | None = None,
        token_budget: int | None = None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.ref = ref
        self.batch_size = batch_size  # the most rows in one forward pass
        self.dtype = dtype
        model_kwargs: dict[str, Any] = {}
        if dtype != "float32":
            model_kwargs["dtype"] = getattr(torch, _DTYPES[dtype])
        if ref.kind == "path" and is_adapter_dir(Path(ref.value)):
            base = exact_base_dir(Path(ref.value), cache_dir)
            with adapter_view(Path(ref.value), base) as view, model_loading():
                self.model = SentenceTransformer(str(view), device=device, model_kwargs=model_kwargs or None)
        else:
            with model_loading():
                self.model = SentenceTransformer(ref.value, device=device, model_kwargs=model_kwargs or None, revision=revision)
        self.merged_adapters = merge_lora(self.model)
        first = self.model[0] if len(self.model) else None
        # Our batching drives a plain Transformer module; anything else keeps encode()'s own loop.
        self.own_batching = type(first).__name__ == "Transformer" and not getattr(first, "can_flatten_inputs", False)
        self.token_budget = max(token_budget or default_token_budget(str(self.model.device)), self.model.max_seq_length or 0)
        self.pooling = pooling
        if pooling is not None:
            _set_pooling(self.model, pooling)
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.normalize_extra = bool(normalize)  # extra normalisation on top of the model's own modules
        self.counter = EncodeCounter()
        self.model_prompts: dict[str, str] = dict(getattr(self.model, "prompts", {}) or {})
        self.similarity = str(getattr(self.model, "similarity_fn_name", None) or "cosine")
        if content is None:
            content = model_identity(ref, revision=revision).content
        self.content = content
        self.fingerprint = fingerprint_of({"backend": "sentence-transformers", "code": ST_CODE_VERSION, "content": content, **self._settings()})

    def _settings(self) -> dict[str, Any]:
        tok = getattr(self.model, "tokenizer", None)
        return {
            "modules": [type(m).__name__ for m in self.model],
            "pooling": [str(getattr(m, "pooling_mode", "")) for m in self.model if type(m).__name__ == "Pooling"],
            "max_seq_length": self.model.max_seq_length,
            "dtype": self.dtype,
            "extra_normalize": self.normalize_extra,
            "tokenizer": _tokenizer_behaviour(tok) if tok is not None else None,
        }

    def plan_texts(self, texts: list[str], prefix: str = "") -> BatchPlan:
        """The forward passes for these texts: exact token counts from the model's own ``preprocess``."""
        lengths: list[int] = []
        for start in range(0, len(texts), self.batch_size):  # encode()'s call size: a 1024-text call to a fast
            # tokenizer leaves its thread pool contending with torch's CPU threads for the rest of the call
            features = self.model.preprocess(texts[start : start + self.batch_size], prompt=prefix or None)
            lengths.extend(int(n) for n in features["attention_mask"].sum(1).tolist())
        return plan_batches(lengths, token_budget=self.token_budget, max_rows=self.batch_size)

    def _prepare(self, texts: list[str], prefix: str) -> dict[str, Any]:
        """One batch's features (run by the worker thread), pinned when they go to a GPU."""
        features = self.model.preprocess(texts, prompt=prefix or None)
        if self.model.device.type == "cuda":
            features = {k: v.pin_memory() if hasattr(v, "pin_memory") else v for k, v in features.items()}
        return features

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        self.counter.add(len(texts))
        if self.own_batching and texts:
            return self._embed_batched(texts, prefix)
        out = self.model.encode(
            texts,
            prompt=prefix or None,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=self.normalize_extra,
        )
        return np.asarray(out, dtype=np.float32)

    def _embed_batched(self, texts: list[str], prefix: str) -> np.ndarray:
        """What ``encode`` does per batch (preprocess, forward, optional truncation and normalisation),
        over token-budget batches of token-sorted texts."""
        import torch
        from sentence_transformers.util import truncate_embeddings

        plan = self.plan_texts(texts, prefix)
        device = self.model.device
        truncate_dim = getattr(self.model, "truncate_dim", None)
        self.model.eval()
        pieces = []
        with torch.inference_mode():
            for _, features in prefetched(plan.batches, lambda b: self._prepare([texts[i] for i in b], prefix),
                                          prefetch_depth(device.type)):
                features = {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in features.items()}
                vec = self.model(features)["sentence_embedding"]
                if truncate_dim is not None:
                    vec = truncate_embeddings(vec, truncate_dim)
                if self.normalize_extra:
                    vec = torch.nn.functional.normalize(vec, p=2, dim=1)
                pieces.append(vec)
            vectors = torch.cat(pieces).float().cpu().numpy()
        out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        out[[i for batch in plan.batches for i in batch]] = vectors
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "sentence-transformers", "reference": self.ref.value, "similarity": self.similarity,
                "batch_size": self.batch_size, "token_budget": self.token_budget, "own_batching": self.own_batching,
                "merged_adapters": self.merged_adapters, "prompts": self.model_prompts, **self._settings()}


def _set_pooling(model: Any, pooling: str) -> None:
    """Switch the model's Pooling module to ``mean`` or ``cls`` (the matrix's ``pooling:``)."""
    modes = {"mean": "mean", "cls": "cls"}
    if pooling not in modes:
        raise ValueError(f"pooling {pooling!r} is not available on the sentence-transformers backend (mean, cls)")
    pools = [m for m in model if type(m).__name__ == "Pooling"]
    if not pools:
        raise ValueError("this sentence-transformers model has no Pooling module to set")
    for m in pools:
        m.pooling_mode = modes[pooling]


def _tokenizer_behaviour(tok: Any) -> dict[str, Any]:
    """What the tokenizer adds on its own: recorded because it silently changes embeddings."""
    probe = tok("probe", add_special_tokens=True)["input_ids"]
    bare = tok("probe", add_special_tokens=False)["input_ids"]
    return {
        "class": type(tok).__name__,
        "adds_bos": bool(tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id] and bare[:1] != [tok.bos_token_id]),
        "adds_eos": bool(tok.eos_token_id is not None and probe[-1:] == [tok.eos_token_id] and bare[-1:] != [tok.eos_token_id]),
        "special_ids_added": [i for i in probe if i not in bare],
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "pad_token": tok.pad_token,
        "padding_side": getattr(tok, "padding_side", None),
        "model_max_length": min(int(getattr(tok, "model_max_length", 0) or 0), 10**9),
        "special_tokens_map": json.loads(json.dumps(getattr(tok, "special_tokens_map", {}), default=str)),
    }
