"""The trainable text encoder: tokenise, run the backbone, pool, normalise.

Training and export share this object's tokenizer and pooling, and the tokenizer already appends
the EOS (see ``backbone``), so what is trained is exactly what ``SentenceTransformer(dir)`` and the
harness's decoder embedder later compute. ``tokenize`` re-checks the EOS on every batch because a
silently missing EOS is the classic way an E5 reproduction goes wrong.
"""

from __future__ import annotations

from typing import Any

import torch

from trainers.pooling import pool


class TextEncoder(torch.nn.Module):
    def __init__(self, backbone: Any, tokenizer: Any, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize

    def tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        if self.pooling == "lasttoken":
            rows = torch.arange(batch["input_ids"].shape[0])
            last = batch["attention_mask"].sum(1) - 1  # right padding
            if not bool((batch["input_ids"][rows, last] == self.tokenizer.eos_token_id).all()):
                raise RuntimeError("a tokenised text does not end with the EOS; last-token pooling would read the wrong position")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vec = pool(hidden, attention_mask, self.pooling)
        if self.normalize:
            vec = torch.nn.functional.normalize(vec.float(), p=2, dim=-1)
        return vec.float()
