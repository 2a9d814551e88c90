"""sentence-transformers models, encoded exactly as mteb's own wrapper encodes them.

Parity with the official leaderboard depends on doing nothing clever here: the whole list goes
to ``SentenceTransformer.encode`` (which sorts by length and batches), the model's own modules
decide pooling and normalisation, and a prompt is passed as ``prompt=`` so models whose pooling
excludes prompt tokens keep doing so. ``pooling`` (``mean`` or ``cls``), when the matrix sets it,
replaces the mode of the model's own Pooling module; ``last-token`` never reaches this backend
(the planner routes it to the decoder path, which guarantees the EOS).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from harness.evaluation.models.base import EncodeCounter, fingerprint_of
from harness.evaluation.models.identity import model_identity
from harness.evaluation.models.reference import ModelReference

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
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        self.name = name
        self.ref = ref
        self.batch_size = batch_size
        self.dtype = dtype
        model_kwargs: dict[str, Any] = {}
        if dtype != "float32":
            model_kwargs["dtype"] = getattr(torch, _DTYPES[dtype])
        self.model = SentenceTransformer(ref.value, device=device, model_kwargs=model_kwargs or None, revision=revision)
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

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        self.counter.add(len(texts))
        out = self.model.encode(
            texts,
            prompt=prefix or None,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
            normalize_embeddings=self.normalize_extra,
        )
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": "sentence-transformers", "reference": self.ref.value, "similarity": self.similarity,
                "batch_size": self.batch_size, "prompts": self.model_prompts, **self._settings()}


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
