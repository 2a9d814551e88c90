"""Decoder LLMs as embedders, the E5-mistral way: last-token pooling on an explicit EOS.

Newer tokenizers silently stopped appending EOS, and with EOS == PAD (SmolLM2, many Llama
derivatives) looking the EOS up by id finds padding instead. So: every text ends in exactly one
EOS (appended by us when the tokenizer does not add it; when it does, as in an E5-style
sentence-transformers export, its ids are kept exactly as ``SentenceTransformer(dir)`` would
produce them, no token shorter), and the pooled position is the last *attended* one, found from
the attention mask (correct for left and right padding).

``pooling`` may also be ``mean`` (over attended positions) or ``cls`` (the first attended
position) for experiments; ``last-token`` is the E5 recipe.

A trainer export holding a LoRA adapter is loaded on the exact base recorded at training and the
adapter is merged before the first text is encoded (:mod:`.adapters`). Encoding runs SDPA attention
over token-budget batches of length-sorted texts, the next batch prepared by a worker thread
(:mod:`.batching`); where FlashAttention-2 is installed (CUDA, half precision) each batch is packed
into one row without padding and the kernel's variable-length path keeps the texts apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluation.models.adapters import is_adapter_dir, load_merged_adapter, merge_lora
from harness.evaluation.models.base import EncodeCounter, fingerprint_of
from harness.evaluation.models.batching import BatchPlan, default_token_budget, plan_batches, prefetch_depth, prefetched
from harness.evaluation.models.identity import model_identity
from harness.evaluation.models.reference import ModelReference
from harness.evaluation.models.sentence_transformer import _tokenizer_behaviour
from trainers.hub import hub_cache_dir
from modelload import model_loading
from trainers.pooling import pool

DECODER_CODE_VERSION = "3"  # bump when tokenisation or pooling code changes: invalidates cached vectors


def _flash_attention_packs(device: str, dtype: Any) -> bool:
    """FlashAttention-2's variable-length kernel is installed and usable here (CUDA, fp16/bf16)."""
    import torch

    if not str(device).startswith("cuda") or dtype not in (torch.float16, torch.bfloat16):
        return False
    try:
        from transformers.utils import is_flash_attn_2_available
    except ImportError:
        return False
    return bool(is_flash_attn_2_available())


def _pool_packed(hidden: Any, lengths: list[int], mode: str) -> Any:
    """``pool`` for one packed row ``[total, dim]`` holding texts of ``lengths`` tokens back to back."""
    import torch

    ends = torch.tensor(lengths, device=hidden.device).cumsum(0)
    if mode in ("last-token", "lasttoken"):
        return hidden[ends - 1]
    if mode == "cls":
        return hidden[ends - torch.tensor(lengths, device=hidden.device)]
    if mode == "mean":
        return torch.stack([part.mean(0) for part in hidden.split(lengths)])
    raise ValueError(f"unknown pooling mode {mode!r}")


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
        cache_dir: Path | None = None,
        token_budget: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.name = name
        self.ref = ref
        self.max_length = max_length
        self.batch_size = batch_size  # the most rows in one forward pass
        self.normalize = normalize
        if pooling not in ("last-token", "mean", "cls"):
            raise ValueError(f"pooling {pooling!r} is not one of last-token, mean, cls")
        self.pooling = pooling
        self.dtype = dtype
        self.torch_dtype = getattr(torch, dtype)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # The most computed tokens in one forward pass; never below one text of max_length (texts are not cut for it).
        self.token_budget = max(token_budget or default_token_budget(self.device), max_length)
        self.packed = _flash_attention_packs(self.device, self.torch_dtype)
        self.attention = "flash_attention_2" if self.packed else "sdpa"
        kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        if revision:
            kwargs["revision"] = revision
        if subfolder:
            kwargs["subfolder"] = subfolder
        with model_loading():
            self.tokenizer = AutoTokenizer.from_pretrained(ref.value, **kwargs)
        self.tokenizer.padding_side = padding_side
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"{ref.value}: tokenizer has no EOS token; last-token pooling needs one")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        load: dict[str, Any] = {"dtype": self.torch_dtype, "attn_implementation": self.attention}
        adapter_dir = Path(ref.value) / subfolder if ref.kind == "path" else None
        if adapter_dir is not None and is_adapter_dir(adapter_dir):
            model, self.merged_adapters = load_merged_adapter(adapter_dir, cache_dir, **load)
        else:
            with model_loading():
                model = AutoModel.from_pretrained(ref.value, cache_dir=hub_cache_dir(), **load, **kwargs)
            self.merged_adapters = merge_lora(model)  # a hub adapter loaded through transformers' peft integration
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False  # an embedder never decodes
        self.model = model.to(self.device).eval()
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

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids ending in the EOS for every text (at most ``max_length`` of them), unpadded.

        A tokenizer that adds the EOS itself keeps room for it when truncating, so its ids are used
        as they are (identical to ``SentenceTransformer(dir)``); otherwise the text is truncated to
        ``max_length - 1`` tokens, a trailing literal EOS is dropped, and one EOS is appended.
        """
        eos = int(self.tokenizer.eos_token_id)
        limit = self.max_length if self.adds_eos else self.max_length - 1
        rows: list[list[int]] = []
        for start in range(0, len(texts), self.batch_size):  # in batch-sized calls: one huge call to a fast
            # tokenizer leaves its thread pool contending with torch's CPU threads (measured: 0.6-0.8x)
            enc = self.tokenizer(texts[start : start + self.batch_size], add_special_tokens=True, truncation=True,
                                 max_length=limit, padding=False)
            rows.extend(list(row) for row in enc["input_ids"])
        if self.adds_eos:
            return rows
        ids = []
        for row in rows:
            row = list(row)
            if row and row[-1] == eos:
                row = row[:-1]
            ids.append(row + [eos])
        return ids

    def _pad(self, rows: list[list[int]]) -> dict[str, Any]:
        """``input_ids`` and ``attention_mask`` padded to the longest row on the tokenizer's padding side."""
        import torch

        longest = max(len(r) for r in rows)
        ids = torch.full((len(rows), longest), int(self.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        left = self.tokenizer.padding_side == "left"
        for j, row in enumerate(rows):
            span = slice(longest - len(row), longest) if left else slice(0, len(row))
            ids[j, span] = torch.tensor(row, dtype=torch.long)
            mask[j, span] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def tokenize(self, texts: list[str]) -> dict[str, Any]:
        """:meth:`token_ids`, padded (what one forward pass of the padded path receives)."""
        return self._pad(self.token_ids(texts))

    def plan(self, ids: list[list[int]]) -> BatchPlan:
        """The forward passes for these token rows (see :mod:`.batching`)."""
        return plan_batches([len(r) for r in ids], token_budget=self.token_budget, max_rows=self.batch_size,
                            packed=self.packed)

    def plan_texts(self, texts: list[str], prefix: str = "") -> BatchPlan:
        return self.plan(self.token_ids([prefix + t for t in texts]))

    def _prepare(self, rows: list[list[int]]) -> dict[str, Any]:
        """One batch's host tensors (run by the worker thread), pinned when they go to a GPU."""
        import torch

        if self.packed:
            batch = {"input_ids": torch.tensor([[t for r in rows for t in r]], dtype=torch.long),
                     "position_ids": torch.tensor([[p for r in rows for p in range(len(r))]], dtype=torch.long)}
        else:
            batch = self._pad(rows)
        if str(self.device).startswith("cuda"):
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def _forward(self, batch: dict[str, Any], lengths: list[int]) -> Any:
        import torch

        inputs = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.packed:
            hidden = self.model(**inputs, use_cache=False).last_hidden_state[0]
            vec = _pool_packed(hidden, lengths, self.pooling)
        else:
            hidden = self.model(**inputs).last_hidden_state
            vec = self._pool(hidden, inputs["attention_mask"])
        vec = vec.float()
        if self.normalize:
            vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
        return vec

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        import torch

        self.counter.add(len(texts))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids([prefix + t for t in texts])
        plan = self.plan(ids)
        pieces = []
        with torch.inference_mode():
            for batch, tensors in prefetched(plan.batches, lambda b: self._prepare([ids[i] for i in b]),
                                             prefetch_depth(self.device)):
                pieces.append(self._forward(tensors, [len(ids[i]) for i in batch]))
            vectors = torch.cat(pieces).cpu().numpy()  # one copy back, so the host never waits per batch
        out[[i for batch in plan.batches for i in batch]] = vectors
        return out

    def _pool(self, hidden: Any, mask: Any) -> Any:
        return pool(hidden, mask, self.pooling)  # the trainer's own pooling: one definition

    def describe(self) -> dict[str, Any]:
        return {"backend": "decoder-last-token", "reference": self.ref.value, "batch_size": self.batch_size,
                "token_budget": self.token_budget, "attention": self.attention, "packed": self.packed,
                "merged_adapters": self.merged_adapters, "padding_side": self.tokenizer.padding_side, **self._settings()}
