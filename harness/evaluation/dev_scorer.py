"""The dev score of a model in training, through the same evaluation code as ``harness run``.

``eval_task:`` in a training recipe is a matrix task entry (``name``, ``data``, ``subsets``,
``splits``, ``instruction``). It is resolved and checked like any task of a matrix (bad input is
an error before training starts), and every ``eval_every`` steps the trainer hands this scorer its
live ``TextEncoder`` and how it formats queries (``trainers.dev``). The score then takes the path of a ``harness run`` cell:
:class:`~harness.evaluation.encoder.CachedEncoder` (the instruction policy decides the exact
prefix per task and side: the E5 template where the trainer uses it, as evaluation will),
:func:`~harness.evaluation.scoring.score_task` (the one ``mteb.evaluate`` call a run cell makes
too), and the main score mteb names.

Two differences, both on purpose. The weights change every step, so vectors go to a throwaway
cache (a temporary folder, gone after the score) and never into the run's embedding cache. And
texts are cut at the recipe's ``passage_max_length``, the length the model is trained at, not the
export's evaluation length: the dev score follows training, it does not replace the final
evaluation.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from harness.errors import InputError
from harness.evaluation.tasks import ResolvedTask, resolve_task_at
from harness.schema import TaskSpec
from inputio import field_problem

SCORER_VERSION = "1"  # bump when this module changes what a dev score means


class LiveEmbedder:
    """The model in training as an evaluation embedder: length-sorted batches, no cache of its own."""

    similarity = "cosine"

    def __init__(self, encoder: Any, *, max_length: int, batch_size: int, bf16: bool, step: int) -> None:
        self.encoder, self.max_length, self.batch_size, self.bf16 = encoder, max_length, batch_size, bf16
        self.name = "model-in-training"
        self.fingerprint = f"dev-step-{step}"  # only ever used in a throwaway cache
        self.model = encoder  # model_facts() reads parameters from here

    def embed(self, texts: list[str], prefix: str = "") -> np.ndarray:
        import torch

        device = next(self.encoder.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: np.ndarray | None = None
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.encoder.tokenize([prefix + texts[i] for i in idx], self.max_length)
                vec = self.encoder(**{k: v.to(device) for k, v in batch.items()}).float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts), vec.shape[1]), dtype=np.float32)
                out[idx] = vec
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {"backend": "model in training", "max_length": self.max_length}


class DevScorer:
    """A ``trainers.dev.DevScorer`` for one matrix task entry (see the module docstring)."""

    def __init__(self, rt: ResolvedTask, *, max_length: int, batch_size: int, bf16: bool) -> None:
        from importlib import metadata

        self.rt = rt
        self.max_length, self.batch_size, self.bf16 = max_length, batch_size, bf16
        self.task = rt.name
        instr = rt.spec.instruction
        blob = {"version": SCORER_VERSION, "task": rt.name, "subsets": rt.subsets, "splits": rt.splits,
                "data": rt.data_fingerprint(), "max_length": max_length,
                "instruction": instr if isinstance(instr, (str, type(None))) else instr.model_dump(),
                "mteb": metadata.version("mteb")}
        self.identity = hashlib.sha256(json.dumps(blob, sort_keys=True).encode("utf-8")).hexdigest()

    def __call__(self, encoder: Any, *, step: int, instructions: str) -> dict[str, Any]:
        from harness.evaluation.embedding_cache import EmbeddingCache
        from harness.evaluation.encoder import CachedEncoder, build_model_meta
        from harness.evaluation.instructions import InstructionPolicy, as_override
        from harness.evaluation.results import main_scores
        from harness.evaluation.scoring import score_task

        embedder = LiveEmbedder(encoder, max_length=self.max_length, batch_size=self.batch_size, bf16=self.bf16, step=step)
        instr = self.rt.spec.instruction
        overrides = {self.rt.name: as_override(instr)} if instr is not None else {}
        policy = InstructionPolicy(mode=instructions, overrides=overrides)  # type: ignore[arg-type]
        with tempfile.TemporaryDirectory(prefix="dev-score-") as tmp:
            cache = EmbeddingCache(Path(tmp) / "vectors.sqlite")
            try:
                cached = CachedEncoder(embedder, cache, policy, build_model_meta("model-in-training", f"step-{step}", embedder),
                                       show_progress=False)
                task_result = score_task(cached, self.rt, batch_size=self.batch_size)
            finally:
                cache.close()
        scores = main_scores(task_result)
        values = [v for per_subset in scores.values() for v in per_subset.values() if v is not None]
        return {"main_score": statistics.fmean(values) if values else float("nan"), "scores": scores}


def make_dev_scorer(eval_task: dict[str, Any], *, source: Path, field: str, max_length: int, batch_size: int = 32,
                    bf16: bool = False) -> DevScorer:
    """Check ``eval_task`` as a matrix task entry (paths relative to ``source``'s folder) and build its scorer.

    Every problem is one :class:`InputError` naming ``source`` and ``field`` (e.g.
    ``models[3].train.recipe.eval_task.data``), raised before anything trains.
    """
    try:
        spec = TaskSpec.model_validate(eval_task)
    except ValidationError as exc:
        found = field_problem(exc, allowed=list(TaskSpec.model_fields))
        raise InputError(source, f"{field}.{found.field}" if found.field else field, found.problem, found.fix) from None
    if spec.name is None:
        raise InputError(source, f"{field}.benchmark", "a dev score is one task, not a benchmark",
                         "name one task with 'name:' (typically a small local split)")
    rt = resolve_task_at(spec, source=source, where=field)
    return DevScorer(rt, max_length=max_length, batch_size=batch_size, bf16=bf16)


def dev_scorer_for(config: Any, *, source: Path, field: str = "eval_task") -> DevScorer | None:
    """The scorer a training config asks for (``eval_every`` + ``eval_task``), or None: one place for
    ``harness train`` and the train step to read a recipe's dev settings the same way."""
    if config.eval_every is None or config.eval_task is None:
        return None
    return make_dev_scorer(config.eval_task, source=source, field=field, max_length=config.passage_max_length,
                           bf16=config.precision == "bf16")
