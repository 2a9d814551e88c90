"""What a person watching a training sees on stderr: a bar with an ETA on a terminal, one plain line
per log window otherwise (CI logs, a file: a redrawn bar there is noise), nothing when turned off.

Both show what the flushed ``metrics.jsonl`` lines say (``trainers.metrics``): the values are read
from the device at log and checkpoint steps only, so the bar advances every step and its loss/lr
postfix changes at each flush.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import torch


def allocator_retries(device: torch.device) -> int:
    """On CUDA, how often the caching allocator had to free its cache and retry (each retry
    synchronises the device): the usual cause of a step time that jumps from one step to the next
    when memory is nearly full and batch shapes vary. The remedy is
    ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True`` or fewer kept blocks."""
    if device.type != "cuda":
        return 0
    return int(torch.cuda.memory_stats(device).get("num_alloc_retries", 0))


class TrainProgress:
    """A tqdm bar when ``stream`` is a terminal, plain lines when not, silent when not ``enabled``."""

    def __init__(self, *, enabled: bool, total: int, start: int, global_batch: int, device: torch.device,
                 stream: IO[str] | None = None) -> None:
        self.enabled = enabled
        self.total = total
        self.global_batch = global_batch
        self.device = device
        self.stream = stream or sys.stderr
        self.bar: Any = None
        self._window: list[dict[str, Any]] = []
        if enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", desc="train", file=self.stream, dynamic_ncols=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def add(self, lines: list[dict[str, Any]]) -> None:
        """Flushed metrics lines (at log and checkpoint steps)."""
        if not self.enabled or not lines:
            return
        if self.bar is not None:
            last, retries = lines[-1], allocator_retries(self.device)
            self.bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}",
                                 **({"allocator_retries": retries} if retries else {}), refresh=False)
        else:
            self._window.extend(lines)

    def log(self) -> None:
        """At a log step without a terminal: one line over the steps since the previous one. Rates are
        over the window: a batch comes from one source, and sources differ in text length, so
        examples/s swings from one source's batch to the next while tokens/s does not."""
        window, self._window = self._window, []
        if self.bar is not None or not window:
            return
        last, seconds = window[-1], max(sum(line["seconds"] for line in window), 1e-9)
        tokens = sum(line["tokens"] for line in window)
        retries = allocator_retries(self.device)
        print(f"step {last['step']}/{self.total}  loss {last['loss']:.4f}  lr {last['lr']:.2e}  "
              f"{len(window) * self.global_batch / seconds:.1f} examples/s  {tokens / seconds:.0f} tokens/s"
              f"{f'  allocator retries {retries}' if retries else ''}  [{last['source']}]",
              file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A one-off line (a dev score): above the bar on a terminal, a plain line otherwise."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
