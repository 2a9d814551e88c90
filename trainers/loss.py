"""InfoNCE over in-batch and hard negatives, with negatives gathered across processes.

Each query scores every document of the *global* batch: all positives and all hard negatives of
every process (gathered with autograd-aware collectives, so each process gets the gradient for the
documents it encoded). This is what a large batch means for contrastive learning; gradient
accumulation would not add negatives, which is why large batches go through GradCache instead.
Classification-derived examples (``in_batch=False``) compare their query with their own positive
and own hard negatives only, as in the E5 paper (other rows' labels may be the right answer).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process, keeping the autograd path to the local part."""
    _, size = world()
    if size == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def info_nce(queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *, temperature: float,
             in_batch: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each local query against the global document pool, in fp32.

    ``queries``/``positives``: ``[B, d]``; ``negatives``: ``[B * k, d]``, example ``i``'s at rows
    ``i*k .. i*k+k-1``; ``in_batch``: ``[B]`` bool, False rows see only their own documents (None:
    every row sees every document; callers pass None when all are True, decided on the host, so
    the step needs no device-to-host sync).

    The logits and the cross-entropy are computed in fp32 whatever autocast the caller runs under:
    at temperature 0.02 a cosine is multiplied by 50, and bf16's 8-bit mantissa would put an error
    of ~0.2 into every logit. GradCache computes its loss outside autocast; computing it here in fp32
    too makes the same recipe give the same model with or without it.
    """
    with torch.autocast(queries.device.type, enabled=False):
        return _info_nce(queries.float(), positives.float(), negatives.float(), temperature, in_batch)


def _info_nce(queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, temperature: float,
              in_batch: torch.Tensor | None) -> torch.Tensor:
    rank, _ = world()
    b = queries.shape[0]
    k = negatives.shape[0] // b if b else 0
    all_pos = gather_with_grad(positives)
    all_neg = gather_with_grad(negatives) if k else negatives
    docs = torch.cat([all_pos, all_neg], dim=0)
    logits = queries @ docs.T / temperature
    labels = torch.arange(b, device=queries.device) + rank * b
    if in_batch is not None:
        n_pos = all_pos.shape[0]
        rows = torch.arange(b, device=logits.device)
        own = torch.zeros_like(logits, dtype=torch.bool)
        own[rows, labels] = True
        for j in range(k):
            own[rows, n_pos + labels * k + j] = True
        keep = own | in_batch.to(logits.device).unsqueeze(1)
        logits = logits.masked_fill(~keep, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, labels)


def global_mean(loss: torch.Tensor) -> torch.Tensor:
    """The mean of every process's loss (each the mean over its equal share of the global batch):
    the loss of the whole batch, as one process would report it. Stays on the device (no sync)."""
    _, size = world()
    if size == 1:
        return loss
    total = loss.detach().clone()
    dist.all_reduce(total)
    return total / size
