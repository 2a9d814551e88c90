"""Decoder LLMs as embedders, the E5-mistral way: last-token pooling on an explicit EOS.

Newer tokenizers silently stopped appending EOS, and with EOS == PAD (SmolLM2, many Llama
derivatives) looking the EOS up by id finds padding instead. So: every text ends in exactly one
EOS (appended by us when the tokenizer does not add it; when it does, as in an E5-style
sentence-transformers export, its ids are kept exactly as ``SentenceTransformer(dir)`` would
produce them, no token shorter), and the pooled position is the last *attended* one, found from
the attention mask (correct for left and right padding).

``pooling`` may also be ``mean`` (over attended positions) or ``cls`` (the first attended
position) for experiments; ``last-token`` is the E5 recipe.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.evaluation.models.base import EncodeCounter, fingerprint_of
from harness.evaluation.models.identity import model_identity
from harness.evaluation.models.reference import ModelReference
from harness.evaluation.models.sentence_transformer import _tokenizer_behaviour
from trainers.pooling import pool

DECODER_CODE_VERSION = "3"  # bump when tokenisation or pooling code changes: invalidates cached vectors


def _merge_lora(model: Any) -> int:
    """Fold LoRA adapters (a trainer export loaded through transformers' peft integration) into the
    weights: unmerged adapters cost ~40% of encoding throughput (NOTES) and change nothing else."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return 0
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for layer in layers:
        layer.merge()
    return len(layers)


class DecoderEmbedder:
    def __init__(
        self,
        name: str,
        ref: ModelReference,
        *,
        content: str | None = None,
        gguf_file: str | None = None,
        revision: str | None = None,
        subfolder: str = "",
        dtype: str = "float32",
        max_length: int = 512,
        pooling: str = "last-token",
        batch_size: int = 8,
        normalize: bool = True,
        padding_side: str = "right",
        device: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        self.ref = ref
        self.max_length = max_length
        self.batch_size = batch_size
        self.normalize = normalize
        if pooling not in ("last-token", "mean", "cls"):
            raise ValueError(f"pooling {pooling!r} is not one of last-token, mean, cls")
        self.pooling = pooling
        self.dtype = dtype
        self.torch_dtype = getattr(torch, dtype)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        if revision:
            kwargs["revision"] = revision
        if subfolder:
            kwargs["subfolder"] = subfolder
        self.tokenizer = AutoTokenizer.from_pretrained(ref.value, **kwargs)
        self.tokenizer.padding_side = padding_side
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"{ref.value}: tokenizer has no EOS token; last-token pooling needs one")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(ref.value, dtype=self.torch_dtype, **kwargs).to(self.device).eval()
        self.merged_adapters = _merge_lora(self.model)
        self.counter = EncodeCounter()
        self.similarity = "cosine"
        self.adds_eos = bool(_tokenizer_behaviour(self.tokenizer)["adds_eos"])
        if content is None:
            content = model_identity(ref, gguf_file=gguf_file, revision=revision).content
        self.content = content
        self.fingerprint = fingerprint_of({"backend": "decoder-last-token", "code": DECODER_CODE_VERSION, "content": content, **self._settings()})

    def _settings(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "eos": "added by the tokenizer" if self.adds_eos else "appended explicitly",
            "eos_token_id": int(self.tokenizer.eos_token_id),
            "max_length": self.max_length,
            "dtype": self.dtype,
            "normalize": self.normalize,
            "tokenizer": _tokenizer_behaviour(self.tokenizer),
        }

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Token ids ending in the EOS for every text (at most ``max_length`` of them), then padded.

        A tokenizer that adds the EOS itself keeps room for it when truncating, so its ids are used
        as they are (identical to ``SentenceTransformer(dir)``); otherwise the text is truncated to
        ``max_length - 1`` tokens, a trailing literal EOS is dropped, and one EOS is appended.
        """
        eos = int(self.tokenizer.eos_token_id)
        if self.adds_eos:
            enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_length, padding=False)
            ids = [list(row) for row in enc["input_ids"]]
            return self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        enc = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_length - 1, padding=False)
        ids = []
        for row in enc["input_ids"]:
            row = list(row)
            if row and row[-1] == eos:
                row = row[:-1]
            ids.append(row + [eos])
        return self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        import torch

        self.counter.add(len(texts))
        full = [prefix + t for t in texts]
        order = sorted(range(len(full)), key=lambda i: -len(full[i]))
        out = np.zeros((len(full), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenize([full[i] for i in idx])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state
                vec = self._pool(hidden, batch["attention_mask"]).float()
                if self.normalize:
                    vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
                out[idx] = vec.cpu().numpy()
        return out

    def _pool(self, hidden: Any, mask: Any) -> Any:
        return pool(hidden, mask, self.pooling)  # the trainer's own pooling: one definition

    def describe(self) -> dict[str, Any]:
        return {"backend": "decoder-last-token", "reference": self.ref.value, "batch_size": self.batch_size,
                "padding_side": self.tokenizer.padding_side, **self._settings()}
