"""How texts become forward passes: token-budget batches over length-sorted texts, prepared ahead.

A fixed number of texts per batch is the wrong unit: 32 queries of 20 tokens leave an accelerator
idle, 32 documents of 512 tokens may not fit, and texts sorted by characters still pad a batch to
its longest *token* count. So texts are sorted by their exact token count and cut into batches of at
most ``token_budget`` computed tokens (rows x longest row; with packing, the sum of the rows) and at
most ``max_rows`` rows (the entry's ``batch_size``). A text longer than the budget is never cut: the
budget is raised to the longest allowed text (``max_length``) so that no batch exceeds it.

The next batch is padded and copied into pinned memory by a worker thread while the current one
runs (:func:`prefetched`), so the host never leaves the accelerator waiting on tokenizer output.
None of this changes a vector beyond floating-point noise, so none of it is part of a fingerprint.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

CPU_TOKEN_BUDGET = 8192  # CPU throughput is flat beyond a few thousand tokens per pass; memory stays small
CUDA_TOKENS_PER_GIB = 1024  # ~64k tokens on an 80 GB card: an order above the size where kernels saturate
CUDA_TOKEN_BUDGET_MAX = 131072


def default_token_budget(device: str) -> int:
    """Computed tokens per forward pass when the entry sets none (``HARNESS_TOKEN_BUDGET`` overrides)."""
    env = os.environ.get("HARNESS_TOKEN_BUDGET")
    if env:
        return max(1, int(env))
    if str(device).startswith("cuda"):
        import torch

        gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
        return int(min(CUDA_TOKEN_BUDGET_MAX, max(8192, CUDA_TOKENS_PER_GIB * gib)))
    return CPU_TOKEN_BUDGET


@dataclass(frozen=True)
class BatchPlan:
    """Which texts go through the model together: ``batches`` index into ``lengths`` (tokens per text)."""

    lengths: list[int]
    batches: list[list[int]]
    packed: bool = False

    def computed_tokens(self, batch: Sequence[int]) -> int:
        """Tokens the model computes for one batch: the rows padded to the longest, or their sum when packed."""
        sizes = [self.lengths[i] for i in batch]
        return sum(sizes) if self.packed else len(sizes) * max(sizes, default=0)

    @property
    def real_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def total_computed(self) -> int:
        return sum(self.computed_tokens(b) for b in self.batches)

    @property
    def padding_efficiency(self) -> float:
        """Real tokens over computed tokens (1.0: no padding at all)."""
        total = self.total_computed
        return self.real_tokens / total if total else 1.0


def plan_batches(lengths: Sequence[int], *, token_budget: int, max_rows: int, packed: bool = False) -> BatchPlan:
    """Longest texts first (an out-of-memory shows on the first batch, not the last), each batch as
    many texts as fit ``token_budget`` and ``max_rows``. Sorting is stable: equal lengths keep their order."""
    if token_budget < 1 or max_rows < 1:
        raise ValueError("token_budget and max_rows must be positive")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    total = 0
    for i in order:
        size = int(lengths[i])
        cost = total + size if packed else max(longest, size) * (len(current) + 1)
        if current and (len(current) >= max_rows or cost > token_budget):
            batches.append(current)
            current, longest, total = [], 0, 0
        current.append(i)
        longest = max(longest, size)
        total += size
    if current:
        batches.append(current)
    return BatchPlan([int(n) for n in lengths], batches, packed)


def prefetch_depth(device: str) -> int:
    """Batches prepared ahead: two on an accelerator; none on a CPU, whose cores are the ones computing
    (a preparing thread there only preempts torch's OpenMP workers, which then wait on each other)."""
    return 0 if str(device) == "cpu" else 2


def prefetched(items: Sequence[T], prepare: Callable[[T], U], depth: int = 2) -> Iterator[tuple[T, U]]:
    """``(item, prepare(item))`` in order, with up to ``depth`` items prepared ahead by one worker thread
    (``depth`` 0: prepared inline, when asked for).

    One worker, not a pool: tokenizers and pinned-memory copies are cheap per batch and a fast
    tokenizer must not be used by two threads at once. An exception in ``prepare`` is raised here, at
    the item it belongs to.
    """
    if not items:
        return
    if depth <= 0:
        for item in items:
            yield item, prepare(item)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode-prepare") as pool:
        pending: deque[Future[U]] = deque(pool.submit(prepare, item) for item in items[:depth])
        for index, item in enumerate(items):
            ready = pending.popleft()
            if index + depth < len(items):
                pending.append(pool.submit(prepare, items[index + depth]))
            yield item, ready.result()
