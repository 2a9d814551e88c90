"""A dev score during training, and the export of the best-scoring weights (``select_best``).

The trainer does not know how to score a model on a task (that is evaluation's job, and libraries
never import ``harness``), so the caller hands it a :class:`DevScorer`: ``harness train`` and
``harness run`` build one from a matrix task entry that scores through the very code ``harness run``
uses (``harness.evaluation.dev_scorer``). Three rules make a dev score safe to take:

- It changes nothing about training. The model is put in eval mode (no dropout) under
  ``torch.inference_mode`` and every random generator is saved before and restored after, because
  an evaluator may reseed them (mteb seeds its classification undersampling): without the restore,
  ``eval_every`` would change every later dropout mask, so the weights, and a resume would differ.
- It resumes like everything else. Dev lines go to ``metrics.jsonl`` (``{"kind": "dev", "step",
  "task", "main_score", "scores"}``) after the step's train lines and before its checkpoint, so a
  resume from checkpoint ``s`` keeps the dev scores of steps ``<= s`` and recomputes the rest, equal.
- ``select_best`` exports the weights with the highest dev score (the earliest on a tie). The best
  weights so far are kept in ``best.pt`` (written atomically: whole or absent), with their step and
  score; a resume keeps them only if that step is at or before the checkpoint it resumes from.
  Because the exported weights then depend on the dev task and ``eval_every``, both enter the
  training identity (``trainers.identity``), by the scorer's content identity, never a path.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any, Protocol

import torch

from atomicio import atomic_write_bytes
from trainers.engine import rng_state, set_rng_state

BEST_FILE = "best.pt"


class DevScorer(Protocol):
    """Scores the model in training on one task; built by the caller (see the module docstring)."""

    task: str  # the task's name, as dev lines and trackers show it
    identity: str  # what determines the score (task, splits, data content, scorer version): no paths

    def __call__(self, encoder: Any, *, step: int, instructions: str) -> dict[str, Any]:
        """``{"main_score": float, "scores": {...}}`` of ``encoder`` (a ``trainers.encoder.TextEncoder``);
        ``instructions`` is ``"e5"`` when the trainer puts the E5 template on queries, else ``"none"``."""
        ...


def dev_line(scorer: DevScorer, encoder: torch.nn.Module, step: int, *, use_e5: bool) -> dict[str, Any]:
    """Score ``encoder`` now, leaving its mode and every random generator as they were."""
    state = rng_state()
    was_training = encoder.training
    started = time.perf_counter()
    encoder.eval()
    try:
        with torch.inference_mode():
            result = scorer(encoder, step=step, instructions="e5" if use_e5 else "none")
    finally:
        encoder.train(was_training)
        set_rng_state(state)
    score = float(result["main_score"])
    return {"kind": "dev", "step": step, "task": scorer.task, "main_score": score if math.isfinite(score) else None,
            "scores": result.get("scores") or {}, "seconds": round(time.perf_counter() - started, 3)}


class BestWeights:
    """The best dev score so far and its trainable weights (``best.pt`` in the output folder)."""

    def __init__(self, output: Path, resumed_from: int) -> None:
        self.path = output / BEST_FILE
        self.step: int | None = None
        self.score: float | None = None
        if self.path.is_file():
            saved = torch.load(self.path, map_location="cpu", weights_only=False)
            if int(saved["step"]) <= resumed_from:  # a later one belongs to steps this run recomputes
                self.step, self.score = int(saved["step"]), float(saved["score"])

    def offer(self, line: dict[str, Any], trainable: Any) -> None:
        """Keep ``trainable()`` (called only when needed) if this dev score beats the best so far."""
        score = line.get("main_score")
        if score is None or (self.score is not None and score <= self.score):
            return
        self.step, self.score = int(line["step"]), float(score)
        buffer = io.BytesIO()
        torch.save({"step": self.step, "score": self.score, "trainable": trainable()}, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def weights(self) -> dict[str, torch.Tensor]:
        if self.step is None:
            raise RuntimeError("select_best: no dev score was finite, so there are no best weights to export")
        return torch.load(self.path, map_location="cpu", weights_only=False)["trainable"]
