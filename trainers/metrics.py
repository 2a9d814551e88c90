"""``metrics.jsonl``: one line per optimizer step, appended as training goes, exact across a kill.

The file is what the report reads (``leaderboards.training_record``: loss and learning-rate curves,
whether the run used a GPU) and what trackers receive (``trainers.trackers``). A ``train`` line:

``{"kind": "train", "step", "loss", "lr", "grad_norm", "seconds", "examples_per_s", "tokens",
"tokens_per_s", "mfu", "peak_memory_gib", "source"}``

- ``step`` is the 1-based optimizer step; ``loss`` the global mean over processes; ``lr`` the
  learning rate this step's update used; ``grad_norm`` the total L2 norm of the (averaged) gradients
  before clipping, null where the engine does not compute one (DeepSpeed with some stages/configs);
- ``tokens`` the real (unpadded) tokens of the whole global batch, summed over processes;
- ``seconds`` the step's wall time. On CPU each step's own host time. On CUDA the host runs ahead of
  the device (there is no sync per step), so a step's host time is only its dispatch time: the lines
  of one flush window share the window's wall time (measured after the flush's sync) divided by its
  steps. ``examples_per_s`` / ``tokens_per_s`` divide by that ``seconds``;
- ``mfu``: ``flops_per_token · tokens_per_s / (peak · processes)`` with 4·N (LoRA: frozen base, no
  weight gradients) or 6·N (full fine-tune) FLOPs per token and the device's dense bf16 peak from
  :data:`PEAK_BF16`; null off CUDA or on a device not in the table (never a guessed peak);
- ``peak_memory_gib``: the CUDA caching allocator's peak during the step; null off CUDA.

No per-step device-to-host sync: the loss and gradient-norm tensors stay on the device and
:meth:`StepMetrics.flush` reads a whole window with one transfer. The trainer flushes at every
``log_every`` step and before every checkpoint, so every step up to the last checkpoint is on disk.

Resume: lines past the checkpoint a run resumes from were written by the killed run; they are
dropped (the file rewritten atomically) before anything is appended, and since a resume is exact
the resumed run writes the same values for those steps again. A line cut off by a kill is dropped
too. So a killed and resumed run leaves exactly one line per step.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from atomicio import atomic_write_bytes, strict_json_value

METRICS_FILE = "metrics.jsonl"
# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, matched against torch.cuda.get_device_name in
# order: the first name contained wins, so the specific H100 variants come before plain "H100" (SXM).
PEAK_BF16: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12),
)
GIB = 2**30


def peak_bf16_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak, or None (CPU, or a GPU this table does not know)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def keep_steps_up_to(path: Path, step: int) -> None:
    """Leave in ``path`` only the lines of steps ``<= step`` (what a resume from that checkpoint keeps).

    Dropped too: an unterminated last line (a kill mid-write) and anything that is not a JSON object
    with an integer ``step``. The file is rewritten atomically and only when something is dropped.
    """
    if not path.is_file():
        return
    raw = path.read_bytes()
    kept: list[bytes] = []
    for line in raw.splitlines(keepends=True):
        try:
            obj = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("step"), int) and obj["step"] <= step:
            kept.append(line)
    if len(b"".join(kept)) != len(raw):
        atomic_write_bytes(path, b"".join(kept))


class MetricsWriter:
    """Appends lines to ``metrics.jsonl`` (rank 0 only), after trimming it to the resumed checkpoint."""

    def __init__(self, path: Path, resume_from: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        keep_steps_up_to(path, resume_from)
        self.path = path
        self._fh = open(path, "a", encoding="utf-8")

    def write(self, lines: list[dict[str, Any]]) -> None:
        """Append and fsync: a line on disk stays there whatever kills the process next."""
        if not lines:
            return
        self._fh.write("".join(json.dumps(strict_json_value(line), allow_nan=False) + "\n" for line in lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


@dataclass
class _Step:
    step: int
    loss: torch.Tensor
    grad_norm: torch.Tensor | float | None
    lr: float
    tokens: int  # this process's real tokens
    started: float
    ended: float
    peak_memory_gib: float | None
    source: str


class StepMetrics:
    """The current window's steps, their loss and gradient norm still on the device.

    Every process records its own steps and calls :meth:`flush` at the same steps (the token counts
    are summed across processes there, one all-reduce per flush).
    """

    def __init__(self, device: torch.device, *, global_batch: int, flops_per_token: float, world_size: int) -> None:
        self.device = device
        self.global_batch = global_batch
        self.flops_per_token = flops_per_token
        self.world_size = world_size
        self.peak_flops = peak_bf16_flops(device)
        self.asynchronous = device.type == "cuda"
        self._window: list[_Step] = []

    def add(self, *, step: int, loss: torch.Tensor, grad_norm: torch.Tensor | float | None, lr: float, tokens: int,
            started: float, source: str) -> None:
        """Record a finished step (host work only: no device sync). ``started``: ``time.perf_counter()``
        when the step began."""
        peak = None
        if self.device.type == "cuda":  # allocator bookkeeping on the host, no sync
            peak = torch.cuda.max_memory_allocated(self.device) / GIB
            torch.cuda.reset_peak_memory_stats(self.device)
        if isinstance(grad_norm, torch.Tensor):
            grad_norm = grad_norm.detach()
        self._window.append(_Step(step, loss.detach(), grad_norm, lr, tokens, started, time.perf_counter(), peak, source))

    def flush(self) -> list[dict[str, Any]]:
        """The window's lines, oldest first, read from the device with one transfer; the window is emptied."""
        window, self._window = self._window, []
        if not window:
            return []
        on_device = [s.grad_norm for s in window if isinstance(s.grad_norm, torch.Tensor)]
        parts = [torch.stack([s.loss.reshape(()) for s in window]).double()]
        parts += [torch.stack([g.reshape(()).to(parts[0].device) for g in on_device]).double()] if on_device else []
        if self.world_size > 1:  # every process's real tokens, summed where the collective runs
            tokens = torch.tensor([s.tokens for s in window], dtype=torch.float64, device=self.device)
            dist.all_reduce(tokens)
            parts.append(tokens.to(parts[0].device))
        values = torch.cat(parts).cpu().tolist()  # the one device-to-host sync of the window
        n = len(window)
        losses, norms = values[:n], iter(values[n : n + len(on_device)])
        totals = values[n + len(on_device):] if self.world_size > 1 else [float(s.tokens) for s in window]
        window_seconds = time.perf_counter() - window[0].started
        lines = []
        for s, loss, tokens in zip(window, losses, totals):
            grad_norm = next(norms) if isinstance(s.grad_norm, torch.Tensor) else s.grad_norm
            seconds = window_seconds / n if self.asynchronous else s.ended - s.started
            seconds = max(seconds, 1e-9)
            tokens_per_s = tokens / seconds
            mfu = (self.flops_per_token * tokens_per_s / (self.peak_flops * self.world_size)
                   if self.peak_flops else None)
            lines.append({"kind": "train", "step": s.step, "loss": loss, "lr": s.lr,
                          "grad_norm": None if grad_norm is None else float(grad_norm), "seconds": seconds,
                          "examples_per_s": self.global_batch / seconds, "tokens": int(tokens),
                          "tokens_per_s": tokens_per_s, "mfu": mfu, "peak_memory_gib": s.peak_memory_gib,
                          "source": s.source})
        return lines


def flops_per_token(module: torch.nn.Module, *, lora: bool) -> float:
    """Training FLOPs per token: 2·N forward + 2·N input gradients, plus 2·N weight gradients unless
    the base is frozen (LoRA): 4·N or 6·N, N every parameter of the model (adapters included).
    Count before an engine partitions the weights (ZeRO-3 leaves each process a slice)."""
    n = sum(p.numel() for p in module.parameters())
    return (4 if lora else 6) * float(n)
