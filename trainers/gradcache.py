"""One contrastive step, full-batch or GradCache, independent of the engine that owns the weights.

GradCache (Gao et al. 2021) makes the loss of a batch of N examples cost the activation memory of
a mini-batch: (1) embed every mini-batch without a graph, (2) compute the InfoNCE loss on those
detached vectors and take its gradient with respect to each vector, (3) embed each mini-batch
again with a graph and back-propagate the cached vector gradients through it. The result equals
the full-batch gradient (dropout is replayed by restoring each mini-batch's RNG state).

Step (3) calls the engine's ``backward`` once per mini-batch and tells it which call closes the
step: DeepSpeed must not reduce or partition gradients before the last one, which is exactly what
sentence-transformers' cached loss cannot tell the HF Trainer (its issues #3173 and #3531).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from trainers.loss import info_nce

Encode = Callable[[dict[str, torch.Tensor]], torch.Tensor]
Backward = Callable[[torch.Tensor, bool], None]


@dataclass
class ContrastiveBatch:
    """Tokenised inputs of one step on this process: queries, then positives followed by negatives."""

    queries: dict[str, torch.Tensor]
    documents: dict[str, torch.Tensor]  # B positives, then B*k negatives (k per example, grouped)
    in_batch: torch.Tensor  # [B] bool

    @property
    def size(self) -> int:
        return int(self.queries["input_ids"].shape[0])


def _chunks(batch: dict[str, torch.Tensor], size: int | None) -> Iterator[dict[str, torch.Tensor]]:
    n = int(batch["input_ids"].shape[0])
    step = size or n
    for start in range(0, n, step):
        sub = {k: v[start : start + step] for k, v in batch.items()}
        # trim padding columns the mini-batch does not need (right padding)
        width = int(sub["attention_mask"].sum(1).max())
        yield {k: v[:, :width] for k, v in sub.items()}


RngState = tuple[torch.Tensor, "int | None", "torch.Tensor | None"]  # CPU state, CUDA device index, its state


def _rng_state(device: Any) -> RngState:
    """The generators a mini-batch's dropout draws from: the CPU's, and the model's CUDA device's
    (only that one: on an 8-GPU node, every rank touching all eight generators per pass is waste)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return torch.get_rng_state(), None, None
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.get_rng_state(), index, torch.cuda.get_rng_state(index)


@contextlib.contextmanager
def _replay(state: RngState) -> Iterator[None]:
    """Run the block from ``state`` (the mini-batch draws its first pass's masks again), then put
    the generators back where they were, so the replays consume nothing."""
    cpu, index, cuda = state
    with torch.random.fork_rng(devices=[index] if index is not None else []):
        torch.set_rng_state(cpu)
        if index is not None:
            torch.cuda.set_rng_state(cuda, index)
        yield


def _split(docs: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    return docs[:b], docs[b:]


def contrastive_step(encode: Encode, batch: ContrastiveBatch, backward: Backward, *, temperature: float,
                     mini_batch_size: int | None, device: Any, autocast: Callable[[], Any]) -> torch.Tensor:
    """Forward and backward of one step; returns the (detached, on-device) loss. The caller steps the optimizer.

    Only the embeddings are computed under ``autocast``; the loss is fp32 in both paths
    (``info_nce``), so GradCache changes the memory a step needs, not the model it trains. The loss
    stays on the device: reading it (a host sync) is the caller's choice, at its logging steps.
    """
    move = lambda part: {k: v.to(device, non_blocking=True) for k, v in part.items()}  # noqa: E731
    b = batch.size
    # decided on the host (the batch is built there): no device-to-host sync in the step
    in_batch = None if bool(batch.in_batch.all()) else batch.in_batch.to(device)
    if not mini_batch_size:
        with autocast():
            q = encode(move(batch.queries))
            d = encode(move(batch.documents))
        pos, neg = _split(d, b)
        loss = info_nce(q, pos, neg, temperature=temperature, in_batch=in_batch)
        backward(loss, True)
        return loss.detach()

    pieces: list[tuple[dict[str, torch.Tensor], Any]] = []
    reps: list[torch.Tensor] = []
    n_q = 0  # how many of the chunks are query chunks (they come first)
    with torch.no_grad():
        for part in (batch.queries, batch.documents):
            for chunk in _chunks(part, mini_batch_size):
                state = _rng_state(device)
                with autocast():
                    reps.append(encode(move(chunk)).detach())
                pieces.append((chunk, state))
            n_q = n_q or len(pieces)
    q_rep = torch.cat(reps[:n_q]).float().requires_grad_()
    d_rep = torch.cat(reps[n_q:]).float().requires_grad_()
    pos, neg = _split(d_rep, b)
    loss = info_nce(q_rep, pos, neg, temperature=temperature, in_batch=in_batch)
    loss.backward()
    grads = list(torch.split(q_rep.grad, [r.shape[0] for r in reps[:n_q]])) + \
        list(torch.split(d_rep.grad, [r.shape[0] for r in reps[n_q:]]))
    for i, ((chunk, state), grad) in enumerate(zip(pieces, grads)):
        with _replay(state), autocast():
            emb = encode(move(chunk))
        surrogate = (emb.float() * grad).sum()
        backward(surrogate, i == len(pieces) - 1)
    return loss.detach()
