"""How a step executes: compile, gradient checkpointing and how many blocks keep their activations.

These change speed and memory, not the loss or the gradients (``trainers.config.EXECUTION``), so a
recipe may leave them unset and they are chosen for the machine. On CPU, auto is off: compile
pays minutes of compilation for little, and memory is rarely what limits a CPU run. On CUDA, auto
is what the H200 measurements favour (docs/benchmarks.md): per-block ``torch.compile`` (1.45x on a
7B LoRA step) and gradient checkpointing on every block except as many as the free memory lets
keep their activations (selective checkpointing: MFU 0.36 with every block recomputed, 0.42 with
12 of 32 kept).

The number kept is an estimate, made before the first step: a block's saved activations cost
about ``ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN`` x hidden size bytes per token of the largest pass
(34 in Korthikanti et al. 2022 for 16-bit activations with fused attention; 34.2 measured on the
H200 for Mistral-7B shapes, compiled, LoRA on every projection: +5.34 GiB per kept block at 40,960
tokens). ``MEMORY_HEADROOM`` of the free memory is left for the allocator, the recompute of one
block, the optimizer and the loss. Not validated on a GPU beyond that one shape.
Whatever is chosen is recorded in training.json; a recipe that sets a value always wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN = 34
MEMORY_HEADROOM = 0.25


@dataclass(frozen=True)
class Execution:
    compile: bool
    gradient_checkpointing: bool
    uncheckpointed_layers: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pass_tokens(config: Any) -> int:
    """Tokens whose activations one backward keeps alive on this process, at most.

    Without GradCache the queries and documents of the local batch are embedded before one
    backward; with it, one mini-batch of documents (the longer texts) at a time.
    """
    from trainers.loss import world

    _, size = world()
    local = max(1, config.batch_size // size)
    if config.mini_batch_size:
        return config.mini_batch_size * max(config.query_max_length, config.passage_max_length)
    k = max([config.hard_negatives] + [s.hard_negatives for s in (config.data.sources or []) if s.hard_negatives is not None])
    return local * (config.query_max_length + (1 + k) * config.passage_max_length)


def kept_blocks(free_bytes: float, *, hidden: int, layers: int, tokens: int) -> int:
    """How many blocks can keep their activations in ``free_bytes`` (the rest recompute them)."""
    stash = layers * tokens * hidden * 2  # each checkpointed block keeps its 16-bit input
    per_block = ACTIVATION_BYTES_PER_TOKEN_PER_HIDDEN * hidden * tokens
    budget = free_bytes * (1 - MEMORY_HEADROOM) - stash
    return max(0, min(layers, int(budget // per_block)))


def resolve_execution(config: Any, device: torch.device, model: Any, n_layers: int) -> Execution:
    """The recipe's settings, with every unset one (None) chosen for ``device`` (see the module docstring)."""
    cuda = device.type == "cuda"
    compile_ = config.compile if config.compile is not None else cuda
    checkpointing = config.gradient_checkpointing
    keep = config.uncheckpointed_layers
    if cuda and (checkpointing is None or (checkpointing and keep is None)):
        hidden = int(getattr(model.config, "hidden_size", 0) or 0)
        free, _ = torch.cuda.mem_get_info(device)
        weights = sum(p.numel() * p.element_size() for p in model.parameters() if not p.is_cuda)
        auto_keep = kept_blocks(free - weights, hidden=hidden, layers=n_layers, tokens=pass_tokens(config)) if hidden else 0
        if checkpointing is None:
            checkpointing = auto_keep < n_layers
        if keep is None:
            keep = auto_keep
    return Execution(compile=bool(compile_), gradient_checkpointing=bool(checkpointing),
                     uncheckpointed_layers=int(keep or 0) if checkpointing else 0)
