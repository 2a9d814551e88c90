"""Decoder LLMs as embedders, the E5-mistral way: last-token pooling on an explicit EOS.

Newer tokenizers silently stopped appending EOS, and with EOS == PAD (SmolLM2, many Llama
derivatives) looking the EOS up by id finds padding instead. So: tokenize without trusting the
tokenizer's EOS, strip one it may have added, append ``eos_token_id`` ourselves, and pool the
last *attended* position found from the attention mask (correct for left and right padding).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.models.base import EncodeCounter, fingerprint_of
from harness.models.fingerprint import content_fingerprint
from harness.models.reference import ModelReference
from harness.models.sentence_transformer import _tokenizer_behaviour

DECODER_CODE_VERSION = "1"  # bump when tokenisation or pooling code changes: invalidates cached vectors


def last_token_indices(attention_mask: Any) -> Any:
    """Index of the last attended position per row, for left- or right-padded batches."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).int().argmax(dim=1)


class DecoderEmbedder:
    def __init__(
        self,
        name: str,
        ref: ModelReference,
        *,
        gguf_file: str | None = None,
        dtype: str = "float32",
        max_length: int = 512,
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
        self.dtype = dtype
        self.torch_dtype = getattr(torch, dtype)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        self.tokenizer = AutoTokenizer.from_pretrained(ref.value, **kwargs)
        self.tokenizer.padding_side = padding_side
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"{ref.value}: tokenizer has no EOS token; last-token pooling needs one")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(ref.value, dtype=self.torch_dtype, **kwargs).to(self.device).eval()
        self.counter = EncodeCounter()
        self.similarity = "cosine"
        if ref.path:
            content = content_fingerprint(ref.value)
        else:
            content = f"hub:{ref.value}@{getattr(self.model.config, '_commit_hash', None) or 'unknown'}"
        self.fingerprint = fingerprint_of({"backend": "decoder-last-token", "code": DECODER_CODE_VERSION, "content": content, **self._settings()})

    def _settings(self) -> dict[str, Any]:
        return {
            "pooling": "last-token",
            "eos": "appended explicitly",
            "eos_token_id": int(self.tokenizer.eos_token_id),
            "max_length": self.max_length,
            "dtype": self.dtype,
            "normalize": self.normalize,
            "tokenizer": _tokenizer_behaviour(self.tokenizer),
        }

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """Token ids with exactly one EOS at the end of every text, then padded."""
        eos = int(self.tokenizer.eos_token_id)
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
                last = last_token_indices(batch["attention_mask"])
                vec = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
                if self.normalize:
                    vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
                out[idx] = vec.cpu().numpy()
        return out

    def describe(self) -> dict[str, Any]:
        return {"backend": "decoder-last-token", "reference": self.ref.value, "batch_size": self.batch_size,
                "padding_side": self.tokenizer.padding_side, **self._settings()}
