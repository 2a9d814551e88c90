"""Running steps against the store: the contract every executor (local, concurrent, Ray) shares.

An executor only decides *where and when* a unit runs; what running means is here:
claim the step, skip it if it is done (by this run, an earlier one, or a concurrent one), run its
kind's function in the work directory, commit (manifest + rename), and for evaluation publish the
result files. A *unit* is one generate step, one train step, or the evaluate steps of one loaded
model (so a model is loaded once, where its cells run).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomicio import atomic_write_text
from harness.evaluation.embedding_cache import EmbeddingCache
from harness.evaluation.results import results_dir
from harness.pipeline.planner import Plan
from harness.pipeline.store import ArtifactStore, Manifest
from harness.steps.base import EVALUATE, GENERATE, TRAIN, Step, canonical_hash

logger = logging.getLogger(__name__)


@dataclass
class StepOutcome:
    kind: str
    label: str
    key: str
    status: str  # "done" | "cached" | "failed" | "skipped"
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    # evaluate only (what the CLI prints and the report reads)
    model: str | None = None
    task: str | None = None

    @property
    def scores(self) -> dict[str, dict[str, float | None]]:
        return self.summary.get("main_scores", {})


@dataclass
class Unit:
    """What one worker runs: one step, or the evaluate steps of one loaded model."""

    kind: str
    steps: list[Step]
    uid: str

    @property
    def inputs(self) -> list[Step]:
        own = {s.key for s in self.steps}
        return list({i.key: i for s in self.steps for i in s.inputs if i.key not in own}.values())

    @property
    def gpu(self) -> bool:
        return any(s.gpu for s in self.steps)

    @property
    def label(self) -> str:
        if self.kind != EVALUATE:
            return self.steps[0].label
        names = list(dict.fromkeys(s.payload.model.spec.name for s in self.steps))
        return f"evaluate {', '.join(names)} ({len(self.steps)} cells)"


def units(plan: Plan) -> list[Unit]:
    """The plan's steps grouped into units, in an order where every unit follows its inputs."""
    out: list[Unit] = []
    groups: dict[str, Unit] = {}
    for s in plan.steps:
        if s.kind == EVALUATE and s.group is not None:
            if s.group not in groups:
                groups[s.group] = Unit(EVALUATE, [], f"evaluate:{canonical_hash(s.group)[:16]}")
                out.append(groups[s.group])
            groups[s.group].steps.append(s)
        else:
            out.append(Unit(s.kind, [s], f"{s.kind}:{s.key[:16]}"))
    return out


@dataclass
class RunContext:
    """Everything a unit needs, rebuildable on any worker from (matrix, output, device, cache)."""

    plan: Plan
    device: str | None
    show_progress: bool
    cache_path: Path
    environment: dict[str, Any]
    loaded_models: dict[str, Any] = field(default_factory=dict)  # weights key -> embedder (one process)

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.plan.output)

    def step_dir(self, step: Step) -> Path:
        return self.store.step_dir(step.kind, step.key)


def default_cache_path(plan: Plan) -> Path:
    env = os.environ.get("HARNESS_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "embeddings.sqlite"
    if plan.loaded.matrix.cache_dir is not None:
        return plan.loaded.resolve(plan.loaded.matrix.cache_dir) / "embeddings.sqlite"
    return plan.output / "cache" / "embeddings.sqlite"


def _after_done(step: Step, ctx: RunContext, manifest: Manifest) -> None:
    if step.kind == EVALUATE:
        from harness.steps.evaluate import publish

        cell = step.payload
        publish(ctx.step_dir(step), results_dir(ctx.plan.output, cell.model.spec.name, cell.model.revision))


def _outcome(step: Step, status: str, **kw: Any) -> StepOutcome:
    extra = {}
    if step.kind == EVALUATE:
        extra = {"model": step.payload.model.spec.name, "task": step.payload.task.name}
    return StepOutcome(step.kind, step.label, step.key, status, **extra, **kw)


def run_step(step: Step, ctx: RunContext, body: Callable[[Path], dict[str, Any]]) -> StepOutcome:
    """Claim, skip if done, run ``body(work_dir)``, commit. Exceptions propagate to the caller."""
    store = ctx.store
    done = store.manifest(step.kind, step.key)
    if done is None:
        with store.claim(step.kind, step.key, on_wait=lambda: logger.warning("%s: another run holds it; waiting", step.label)):
            done = store.manifest(step.kind, step.key)
            if done is None:
                start = time.monotonic()
                if step.kind == EVALUATE:
                    work = store.fresh_work_dir(step.kind, step.key)  # nothing to resume: vectors are in the cache
                else:
                    work = store.work_dir(step.kind, step.key)
                    work.mkdir(parents=True, exist_ok=True)
                summary = body(work)
                seconds = time.monotonic() - start
                m = store.commit(step.kind, step.key, label=step.label, code_version=step.code_version, params=step.params,
                                 inputs=step.input_keys, summary=summary, seconds=seconds)
                _after_done(step, ctx, m)
                return _outcome(step, "done", summary=summary, seconds=round(seconds, 3))
    _after_done(step, ctx, done)
    return _outcome(step, "cached", summary=done.summary)


def fail(step: Step, ctx: RunContext, exc: BaseException) -> StepOutcome:
    tb = "".join(traceback.format_exception(exc))
    name = (f"{step.payload.model.spec.name}__{step.payload.task.name}" if step.kind == EVALUATE
            else f"{step.kind}__{step.label.split(' ', 1)[1]}")
    log = ctx.plan.output / "logs" / f"{name}.log".replace("/", "__")
    atomic_write_text(log, tb)
    logger.error("%s failed: %s (traceback in %s)", step.label, exc, log)
    return _outcome(step, "failed", error=f"{type(exc).__name__}: {exc}")


def skipped(step: Step, reason: str) -> StepOutcome:
    return _outcome(step, "skipped", error=reason)


def execute_unit(unit: Unit, ctx: RunContext) -> tuple[list[StepOutcome], dict[str, Any]]:
    """Run one unit in this process; returns its outcomes and (evaluation) encode statistics."""
    from harness.steps.train import model_path

    if unit.kind == GENERATE:
        from harness.steps.generate import run_generate

        step = unit.steps[0]
        try:
            return [run_step(step, ctx, lambda work: run_generate(step, work, progress=ctx.show_progress))], {}
        except Exception as exc:
            return [fail(step, ctx, exc)], {}
    if unit.kind == TRAIN:
        from harness.steps.train import run_train

        step = unit.steps[0]
        try:
            return [run_step(step, ctx, lambda work: run_train(step, work, ctx.step_dir, progress=ctx.show_progress,
                                                               provenance=ctx.environment))], {}
        except Exception as exc:
            return [fail(step, ctx, exc)], {}
    from harness.steps.evaluate import ModelSession, run_evaluate

    cache = EmbeddingCache(ctx.cache_path)
    outcomes: list[StepOutcome] = []
    sessions: dict[str, ModelSession] = {}  # one per model entry; entries on the same weights share the loaded model
    try:
        for step in unit.steps:
            mp = step.payload.model
            try:
                session = sessions.get(mp.spec.name)
                if session is None:
                    if mp.train is not None:
                        mp.resolve_trained(model_path(ctx.store.step_dir(TRAIN, mp.train.key)))
                    session = sessions[mp.spec.name] = ModelSession(
                        mp, matrix_dir=ctx.plan.loaded.base_dir, matrix_path=ctx.plan.loaded.path, cache=cache,
                        overrides=step.payload.overrides, device=ctx.device, show_progress=ctx.show_progress,
                        loaded=ctx.loaded_models)
                outcomes.append(run_step(step, ctx, lambda work, step=step, session=session: run_evaluate(
                    step, work, session, environment=ctx.environment)))
            except Exception as exc:  # this cell fails; a model that cannot load fails each of its cells alike
                outcomes.append(fail(step, ctx, exc))
    finally:
        stats = {"hits": cache.hits, "misses": cache.misses, "damaged": cache.damaged}
        cache.close()
    # cumulative per loaded model: entries sharing weights report the same counter
    encode = {name: s.stats() for name, s in sessions.items() if s.embedder is not None}
    return outcomes, {"encode": encode, "cache": stats}
