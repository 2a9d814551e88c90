"""The local executor: runs a plan's missing cells, one model loaded at a time.

A failing (model, task) cell is recorded with its traceback and the others still run. Cells of
one model share one loaded model and, through the embedding cache, every vector already computed
by any cell, split, subset or earlier run. This executor is sequential because on one machine the
model is the bottleneck; the step/manifest contract is what a distributed executor would share.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from atomicio import atomic_write_json, atomic_write_text, remove_stale_temporaries
from harness.embedding_cache import EmbeddingCache
from harness.encoder import CachedEncoder, build_model_meta
from harness.instructions import InstructionPolicy
from harness.plan import EVAL_STEP, GENERATE_STEP, Cell, GenerateStep, ModelPlan, Plan
from harness.provenance import environment
from harness.results import PerQueryRecorder, main_scores, results_dir, write_task_result
from harness.store import ArtifactStore

logger = logging.getLogger(__name__)


@dataclass
class CellOutcome:
    model: str
    task: str
    status: str  # "done" | "cached" | "failed"
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunReport:
    output: Path
    outcomes: list[CellOutcome] = field(default_factory=list)
    encode_stats: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def failed(self) -> list[CellOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def to_json(self) -> dict[str, Any]:
        return {
            "output": str(self.output),
            "cells": [o.__dict__ for o in self.outcomes],
            "encode_stats": self.encode_stats,
        }


def default_cache_path(plan: Plan) -> Path:
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "embeddings.sqlite"
    if plan.loaded.matrix.cache_dir is not None:
        return plan.loaded.resolve(plan.loaded.matrix.cache_dir) / "embeddings.sqlite"
    return plan.output / "cache" / "embeddings.sqlite"


def _as_override(instr: Any) -> dict[str, str]:
    if isinstance(instr, str):
        return {"all": instr}
    return {k: v for k, v in instr.model_dump().items() if v is not None}


def instruction_overrides(plan: Plan, mp: ModelPlan) -> dict[str, dict[str, str]]:
    """Task-level overrides, then the model entry's own (which win)."""
    out = {rt.name: _as_override(rt.spec.instruction) for rt in plan.tasks if rt.spec.instruction is not None}
    out.update({name: _as_override(instr) for name, instr in mp.spec.task_instructions.items()})
    return out


def _weights_key(mp: ModelPlan) -> str:
    """Entries that differ only in name or instructions share one loaded model (a hub pin is part of the content)."""
    settings = mp.spec.model_dump(exclude={"name", "revision", "instructions", "task_instructions"})
    return json.dumps({"content": mp.resolved.identity.content, **settings}, sort_keys=True, default=str)


def _evaluate_cell(cell: Cell, encoder: CachedEncoder, plan: Plan, store: ArtifactStore, embedder: Any,
                   policy: InstructionPolicy) -> CellOutcome:
    import mteb

    rt = cell.task
    rt.load()
    recorder = PerQueryRecorder(rt.task)
    start = time.monotonic()
    encoder.prefixes_seen.clear()
    try:
        result = mteb.evaluate(
            encoder, [rt.task], cache=None, overwrite_strategy="always", co2_tracker=False,
            show_progress_bar=False, raise_error=True,
            encode_kwargs={"batch_size": cell.model.spec.batch_size, "show_progress_bar": False},
        )
    finally:
        rt.task.__dict__.pop("task_specific_scores", None)  # drop the per-query hook
    task_result = result.task_results[0]
    provenance = {
        **environment(),
        "model": {"name": cell.model.spec.name, "reference": cell.model.spec.model, "revision": cell.model.revision,
                  "fingerprint": embedder.fingerprint, "encode": embedder.describe(),
                  "content": cell.model.resolved.identity.content, "backend": cell.model.resolved.decision.to_json()},
        "instructions": {"mode": policy.mode, "prefixes": sorted(encoder.prefixes_seen)},
        "task": {"name": rt.name, "type": rt.task_type, "subsets": rt.subsets, "splits": rt.splits,
                 "data": str(rt.data_dir) if rt.data_dir else "hub", "data_fingerprint": rt.data_fingerprint(),
                 "skipped_subsets": rt.skipped_subsets, "data_notes": rt.notes},
        "step_key": cell.key,
    }
    folder = results_dir(plan.output, cell.model.spec.name, cell.model.revision)
    written = write_task_result(folder, task_result, provenance, encoder.mteb_model_meta, recorder.to_json(rt.name))
    scores = main_scores(task_result)
    store.complete(EVAL_STEP, cell.key, written, {"model": cell.model.spec.name, "task": rt.name, "main_scores": scores})
    return CellOutcome(cell.model.spec.name, rt.name, "done", scores, seconds=round(time.monotonic() - start, 3))


def _fail(plan: Plan, cell: Cell, exc: BaseException) -> CellOutcome:
    tb = "".join(traceback.format_exception(exc))
    log = plan.output / "logs" / f"{cell.model.spec.name}__{cell.task.name}.log".replace("/", "__")
    atomic_write_text(log, tb)
    logger.error("cell %s failed: %s (traceback in %s)", cell.label, exc, log)
    return CellOutcome(cell.model.spec.name, cell.task.name, "failed", error=f"{type(exc).__name__}: {exc}")


def _run_generate(plan: Plan, step: GenerateStep, store: ArtifactStore, show_progress: bool) -> CellOutcome:
    """Generation writes into the step directory; its response store there makes a kill resumable."""
    from generators.commands import generate

    start = time.monotonic()
    out = store.step_dir(GENERATE_STEP, step.key) / "output"
    manifest = generate(step.config_path, out, progress=show_progress)
    written = [out / manifest.examples_file, out / "manifest.json"]
    summary = {"kept": manifest.kept, "counts": manifest.counts, "rejects": manifest.rejects, "cost_usd": manifest.cost_usd,
               "examples": str((out / manifest.examples_file).relative_to(plan.output))}
    store.complete(GENERATE_STEP, step.key, written, summary)
    return CellOutcome("generate", step.spec.name, "done", detail=summary, seconds=round(time.monotonic() - start, 3))


def run_plan(plan: Plan, *, show_progress: bool = True, device: str | None = None,
             cache_path: Path | None = None) -> RunReport:
    from harness.models.loader import instruction_mode, load_embedder

    plan.output.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(plan.output)
    store = ArtifactStore(plan.output)
    cache = EmbeddingCache(cache_path or default_cache_path(plan))
    report = RunReport(output=plan.output)
    embedders: dict[str, Any] = {}
    bar = tqdm(total=len(plan.cells) + len(plan.generate), desc="steps", unit="step", disable=not show_progress)
    try:
        for step in plan.generate:
            done = store.completed(GENERATE_STEP, step.key)
            if done is not None:
                report.outcomes.append(CellOutcome("generate", step.spec.name, "cached", detail=done.summary))
            else:
                bar.set_postfix_str(f"generate {step.spec.name}")
                try:
                    report.outcomes.append(_run_generate(plan, step, store, show_progress))
                except Exception as exc:
                    tb = "".join(traceback.format_exception(exc))
                    atomic_write_text(plan.output / "logs" / f"generate__{step.spec.name}.log", tb)
                    report.outcomes.append(CellOutcome("generate", step.spec.name, "failed", error=f"{type(exc).__name__}: {exc}"))
            bar.update(1)
        for mp in plan.models:
            cells = [c for c in plan.cells if c.model is mp]
            todo: list[Cell] = []
            for c in cells:
                done = store.completed(EVAL_STEP, c.key)
                if done is not None:
                    report.outcomes.append(CellOutcome(mp.spec.name, c.task.name, "cached", done.summary.get("main_scores", {})))
                    bar.update(1)
                else:
                    todo.append(c)
            if not todo:
                continue
            try:
                bar.set_postfix_str(f"loading {mp.spec.name}")
                wkey = _weights_key(mp)
                if wkey not in embedders:
                    embedders[wkey] = load_embedder(mp.spec, plan.loaded.base_dir, plan.loaded.path, device=device,
                                                    resolved=mp.resolved)
                embedder = embedders[wkey]
            except Exception as exc:  # the model is unusable: every cell of it fails, others go on
                for c in todo:
                    report.outcomes.append(_fail(plan, c, exc))
                    bar.update(1)
                continue
            mode = instruction_mode(mp.spec, mp.resolved.decision.backend)
            policy = InstructionPolicy(mode=mode, overrides=instruction_overrides(plan, mp),  # type: ignore[arg-type]
                                       model_prompts=getattr(embedder, "model_prompts", {}) or {})
            encoder = CachedEncoder(embedder, cache, policy, build_model_meta(mp.spec.name, mp.revision, embedder),
                                    show_progress=show_progress)
            for c in todo:
                bar.set_postfix_str(c.label)
                try:
                    report.outcomes.append(_evaluate_cell(c, encoder, plan, store, embedder, policy))
                except Exception as exc:
                    report.outcomes.append(_fail(plan, c, exc))
                bar.update(1)
            counter = getattr(embedder, "counter", None)
            report.encode_stats[mp.spec.name] = {  # cumulative for entries sharing loaded weights
                "texts_encoded": counter.texts if counter else 0,
                "encode_calls": counter.calls if counter else 0,
            }
    finally:
        bar.close()
        report.encode_stats["_cache"] = {"hits": cache.hits, "misses": cache.misses, "damaged": cache.damaged}
        cache.close()
        atomic_write_json(plan.output / "run.json", report.to_json())
    return report

