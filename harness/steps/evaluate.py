"""Evaluate steps: one (model entry, task) cell scored by mteb's own evaluator.

A step writes its MTEB-layout files (``<Task>.json``, per-query scores, ``model_meta.json``) into
its own work directory; once the step is committed they are *published* into the run's shared
``results/<model>/<revision>/`` folder (each file atomically), where mteb's tools and the
leaderboards read them. Publishing again from a finished step is idempotent, so a deleted result
file comes back on the next run without re-scoring.

Cells of one model entry form a *group*: they share one loaded model (:class:`ModelSession`, which
loads nothing until a cell actually needs encoding) and, through the embedding cache, every vector
any cell, split, subset, run or renamed entry ever computed with the same weights and prompt.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicio import atomic_write_bytes
from harness.evaluation.embedding_cache import EmbeddingCache
from harness.evaluation.instructions import InstructionPolicy
from harness.evaluation.models.loader import ResolvedModel
from harness.evaluation.tasks import ResolvedTask
from harness.schema import ModelSpec
from harness.steps.base import EVALUATE, Step

CODE_VERSION = "1"  # bump when evaluation code changes what a result means
RESULTS = "results"  # inside the step directory


@dataclass(eq=False)
class ModelPlan:
    """A matrix model entry as planned: its key (hence results revision) is known before it exists.

    External models carry their resolved content identity; a trained model carries its train step
    and is resolved (from the exported directory) only once that step is done.
    """

    spec: ModelSpec
    key: str
    backend: str
    backend_reason: str
    resolved: ResolvedModel | None = None
    train: Step | None = None

    @property
    def revision(self) -> str:
        """Content-derived: changes whenever weights (or their train step) or encode settings change."""
        return self.key[:12]

    @property
    def content(self) -> str:
        return f"train:{self.train.key}" if self.train is not None else self.resolved.identity.content  # type: ignore[union-attr]

    def weights_key(self) -> str:
        """Entries differing only in name or instructions share one loaded model."""
        settings = self.spec.model_dump(exclude={"name", "revision", "instructions", "task_instructions"})
        return json.dumps({"content": self.content, **settings}, sort_keys=True, default=str)

    def resolve_trained(self, model_dir: Path) -> ResolvedModel:
        """The trained model, once exported: its identity stays the train step's key."""
        from harness.evaluation.models.backend import decide_backend
        from harness.evaluation.models.identity import ModelIdentity
        from harness.evaluation.models.reference import ModelReference

        if self.resolved is None:
            ref = ModelReference("path", str(model_dir))
            decision = decide_backend(ref, kind=self.spec.kind, pooling=self.spec.pooling)
            self.resolved = ResolvedModel(ref=ref, identity=ModelIdentity(content=self.content), decision=decision)
        return self.resolved


@dataclass(eq=False)
class Cell:
    """The evaluate step's payload: which model entry on which task, with which instructions."""

    model: ModelPlan
    task: ResolvedTask
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model.spec.name} × {self.task.name}"


def evaluate_step(cell: Cell, params: dict[str, Any]) -> Step:
    inputs = [cell.model.train] if cell.model.train is not None else []
    return Step(kind=EVALUATE, label=f"evaluate {cell.label}", params=params, inputs=inputs, code_version=CODE_VERSION,
                payload=cell, gpu=True, group=cell.model.weights_key())


class ModelSession:
    """One loaded model and its cached encoder, shared by every cell of a group; loads on first use."""

    def __init__(self, mp: ModelPlan, *, matrix_dir: Path, matrix_path: Path, cache: EmbeddingCache,
                 overrides: dict[str, dict[str, str]], device: str | None, show_progress: bool,
                 loaded: dict[str, Any]) -> None:
        self.mp, self.matrix_dir, self.matrix_path = mp, matrix_dir, matrix_path
        self.cache, self.overrides, self.device, self.show_progress = cache, overrides, device, show_progress
        self._loaded = loaded  # weights key -> embedder, shared across groups of one process
        self.encoder: Any = None
        self.embedder: Any = None
        self.policy: InstructionPolicy | None = None
        self._error: BaseException | None = None

    def ensure(self) -> None:
        """Load once; a model that failed to load fails every later cell with the same error, without retrying."""
        if self.encoder is not None:
            return
        if self._error is not None:
            raise self._error
        try:
            self._load()
        except Exception as exc:
            self._error = exc
            raise

    def _load(self) -> None:
        from harness.evaluation.encoder import CachedEncoder, build_model_meta
        from harness.evaluation.models.loader import instruction_mode, load_embedder

        mp = self.mp
        wkey = mp.weights_key()
        if wkey not in self._loaded:
            spec = mp.spec if mp.spec.model else mp.spec.model_copy(update={"model": mp.resolved.ref.value})  # type: ignore[union-attr]
            self._loaded[wkey] = load_embedder(spec, self.matrix_dir, self.matrix_path, device=self.device,
                                               resolved=mp.resolved)
        self.embedder = self._loaded[wkey]
        mode = instruction_mode(mp.spec, mp.resolved.decision.backend)  # type: ignore[union-attr]
        self.policy = InstructionPolicy(mode=mode, overrides=self.overrides,  # type: ignore[arg-type]
                                        model_prompts=getattr(self.embedder, "model_prompts", {}) or {})
        self.encoder = CachedEncoder(self.embedder, self.cache, self.policy,
                                     build_model_meta(mp.spec.name, mp.revision, self.embedder), show_progress=self.show_progress)

    def stats(self) -> dict[str, int]:
        counter = getattr(self.embedder, "counter", None)
        return {"texts_encoded": counter.texts if counter else 0, "encode_calls": counter.calls if counter else 0}


def run_evaluate(step: Step, work: Path, session: ModelSession, *, environment: dict[str, Any]) -> dict[str, Any]:
    """Score one cell with mteb and write its files into ``work/results``; returns the summary."""
    import mteb

    from harness.evaluation.results import PerQueryRecorder, main_scores, write_task_result

    cell: Cell = step.payload
    rt = cell.task
    session.ensure()
    encoder, embedder, mp = session.encoder, session.embedder, cell.model
    rt.load()
    recorder = PerQueryRecorder(rt.task)
    start = time.monotonic()
    encoder.prefixes_seen.clear()
    try:
        result = mteb.evaluate(
            encoder, [rt.task], cache=None, overwrite_strategy="always", co2_tracker=False,
            show_progress_bar=False, raise_error=True,
            encode_kwargs={"batch_size": mp.spec.batch_size, "show_progress_bar": False},
        )
    finally:
        rt.task.__dict__.pop("task_specific_scores", None)  # drop the per-query hook
    task_result = result.task_results[0]
    provenance = {
        **environment,
        "model": {"name": mp.spec.name, "reference": mp.spec.model or f"train step {mp.train.key}",  # type: ignore[union-attr]
                  "revision": mp.revision, "fingerprint": embedder.fingerprint, "encode": embedder.describe(),
                  "content": mp.content, "backend": mp.resolved.decision.to_json(),  # type: ignore[union-attr]
                  **({"train_step": mp.train.key} if mp.train is not None else {})},
        "instructions": {"mode": session.policy.mode, "prefixes": sorted(encoder.prefixes_seen)},  # type: ignore[union-attr]
        "task": {"name": rt.name, "type": rt.task_type, "subsets": rt.subsets, "splits": rt.splits,
                 "data": str(rt.data_dir) if rt.data_dir else "hub", "data_fingerprint": rt.data_fingerprint(),
                 "skipped_subsets": rt.skipped_subsets, "data_notes": rt.notes},
        "step_key": step.key,
    }
    write_task_result(work / RESULTS, task_result, provenance, encoder.mteb_model_meta, recorder.to_json(rt.name))
    return {"model": mp.spec.name, "revision": mp.revision, "task": rt.name, "main_scores": main_scores(task_result),
            "seconds": round(time.monotonic() - start, 3)}


def publish(step_dir: Path, results_dir: Path) -> list[Path]:
    """Copy a finished step's files into the shared results folder (atomically; unchanged ones skipped)."""
    written = []
    src_root = step_dir / RESULTS
    for src in sorted(src_root.rglob("*")):
        if not src.is_file():
            continue
        dst = results_dir / src.relative_to(src_root)
        data = src.read_bytes()
        if dst.is_file() and dst.stat().st_size == len(data) and dst.read_bytes() == data:
            continue
        atomic_write_bytes(dst, data)
        written.append(dst)
    return written
