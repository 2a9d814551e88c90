"""Sentence vectors from token states: last-token (E5 decoders), mean and CLS (encoders).

Last-token pooling reads the last *attended* position found from the attention mask, never the
EOS looked up by id: with EOS == PAD (SmolLM2 and many Llama derivatives) an id lookup lands on
padding. Finding it from the mask is correct for left and right padding alike. Evaluation
(``harness.evaluation.models.decoder``) imports these functions, so both sides pool identically.
"""

from __future__ import annotations

from typing import Literal

import torch

PoolingMode = Literal["lasttoken", "mean", "cls"]
POOLING_MODES: tuple[str, ...] = ("lasttoken", "mean", "cls")
ALIASES = {"last-token": "lasttoken"}  # the matrix's spelling


def last_token_indices(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended position per row, for left- or right-padded batches."""
    length = attention_mask.shape[1]
    return length - 1 - attention_mask.flip(1).int().argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """``[batch, seq, dim]`` token states -> ``[batch, dim]`` sentence vectors (left or right padding)."""
    mode = ALIASES.get(mode, mode)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "lasttoken":
        return hidden[rows, last_token_indices(attention_mask)]
    if mode == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    if mode == "cls":
        return hidden[rows, attention_mask.int().argmax(dim=1)]  # first attended position
    raise ValueError(f"unknown pooling mode {mode!r}; use one of {', '.join(POOLING_MODES)}")
