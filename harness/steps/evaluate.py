"""The evaluate kind: one (model entry, task) cell scored by mteb's own evaluator.

Key: the model entry's key (its content identity and encode settings, or its train step's key),
its name (results are filed under it), the task, subsets and splits, the instruction, the data's
content fingerprint and the mteb version. No device: a run on eight GPUs and one on a laptop share
their results.

A step writes its MTEB-layout files (``<Task>.json``, per-query scores, ``model_meta.json``) into
its own work directory; once the step is committed they are *published* into the run's shared
``results/<model>/<revision>/`` folder (each file atomically), where mteb's tools and the
leaderboards read them. Publishing again from a finished step is idempotent, so a deleted result
file comes back on the next run without re-scoring.

Cells of one model entry form a *group*, run as one unit: they share one loaded model
(:class:`ModelSession`, which loads nothing until a cell actually needs encoding) and, through the
run-level embedding cache, every vector any cell, split, subset, run or renamed entry ever
computed with the same weights and prompt. Nothing to resume: a killed cell's vectors are in the
cache already, so each try starts with an empty work directory.

With several devices (``--devices``) the model is loaded by one worker process per device instead
(:class:`~harness.evaluation.device_pool.DevicePool`), started when a cell first needs it and stopped
with the unit; mteb and the cache stay in this process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomicio import atomic_write_bytes
from harness.evaluation.embedding_cache import EmbeddingCache
from harness.evaluation.instructions import InstructionPolicy
from harness.evaluation.models.backend import BackendDecision
from harness.evaluation.models.loader import ResolvedModel
from harness.evaluation.tasks import ResolvedTask
from harness.schema import ModelSpec
from harness.steps.base import EVALUATE, CacheUse, Estimate, Step
from harness.steps.context import RunContext
from harness.steps.quantities import PEAK_BF16, PEAK_FP32, big, gpu_time

if TYPE_CHECKING:
    from harness.steps.train import TrainSpec

RESULTS = "results"  # inside the step directory
CHARS_PER_TOKEN = 4.0
ENCODE_MFU = 0.50  # ../shared/NOTES.md: encode, bf16, dense batches (35.3k-36.0k tokens/s on 7.11e9 params)


@dataclass(frozen=True, eq=False)
class ModelPlan:
    """A matrix model entry as planned: its key (hence results revision) is known before it exists.

    An existing model carries ``resolved`` (reference, content identity and backend, read at plan
    time). A trained model carries its train step and the backend its export is ``expected`` to get
    (decided from its base); it is resolved from the exported directory only once the step is done,
    into a new plan (:meth:`with_export`): a plan is never changed after the planner made it.
    """

    spec: ModelSpec
    key: str
    source: Path  # the matrix file (messages; relative references were resolved at plan time)
    resolved: ResolvedModel | None = None
    train: Step[TrainSpec] | None = None
    expected: BackendDecision | None = None  # a trained model's backend until its export is resolved

    def __post_init__(self) -> None:
        if self.resolved is None and (self.train is None or self.expected is None):
            raise ValueError("a model plan is resolved (an existing model) or has a train step and an expected backend")

    @property
    def decision(self) -> BackendDecision:
        """Its backend and why: read from the model's own files, or, for a trained model not yet
        exported, the one the planner expects (the export is decided from its own files again)."""
        return self.resolved.decision if self.resolved is not None else self.expected  # type: ignore[return-value]

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

    def with_export(self, model_dir: Path) -> ModelPlan:
        """This trained entry resolved from its export in ``model_dir`` (its finished train step's
        ``model``): the backend decided from the export's files; key, revision and identity stay
        the train step's. An existing model is returned as it is."""
        from harness.evaluation.models.backend import decide_backend
        from harness.evaluation.models.identity import ModelIdentity
        from harness.evaluation.models.reference import ModelReference

        if self.train is None:
            return self
        ref = ModelReference("path", str(model_dir))
        decision = decide_backend(ref, kind=self.spec.kind, pooling=self.spec.pooling)
        return replace(self, resolved=ResolvedModel(ref=ref, identity=ModelIdentity(content=self.content), decision=decision))


@dataclass(eq=False)
class Cell:
    """The evaluate step's spec: which model entry on which task, with which instructions."""

    model: ModelPlan
    task: ResolvedTask
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model.spec.name} × {self.task.name}"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class ModelSession:
    """One loaded model and its cached encoder, shared by every cell of a group; loads on first use.

    ``mp`` is the entry resolved (a trained one from its export: :meth:`ModelPlan.with_export`).

    ``loaded`` (weights key -> embedder) is where a loaded model is kept for entries on the same
    weights: this process's models, or the unit's device pools.
    """

    def __init__(self, mp: ModelPlan, *, cache: EmbeddingCache, overrides: dict[str, dict[str, str]],
                 ctx: RunContext, loaded: dict[str, Any]) -> None:
        self.mp, self.cache, self.overrides, self.ctx, self.loaded = mp, cache, overrides, ctx, loaded
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
        from harness.evaluation.models.loader import instruction_mode

        mp, loaded = self.mp, self.loaded
        wkey = mp.weights_key()
        if wkey not in loaded:
            loaded[wkey] = self._open()
        self.embedder = loaded[wkey]
        mode = instruction_mode(mp.spec, mp.decision.backend)
        self.policy = InstructionPolicy(mode=mode, overrides=self.overrides,  # type: ignore[arg-type]
                                        model_prompts=getattr(self.embedder, "model_prompts", {}) or {})
        self.encoder = CachedEncoder(self.embedder, self.cache, self.policy,
                                     build_model_meta(mp.spec.name, mp.revision, self.embedder), show_progress=self.ctx.show_progress)

    def _open(self) -> Any:
        """The entry's embedder: here on ``--device``, or in one worker per device of ``--devices``
        (an API model is only a client: it stays here)."""
        from harness.evaluation.models.loader import load_embedder

        mp, ctx = self.mp, self.ctx
        spec = mp.spec if mp.spec.model else mp.spec.model_copy(update={"model": mp.resolved.ref.value})  # type: ignore[union-attr]
        load = partial(load_embedder, spec, mp.source.parent, mp.source, resolved=mp.resolved, cache_dir=ctx.caches.dense)
        if len(ctx.devices) > 1 and mp.decision.backend != "openai":
            from harness.evaluation.device_pool import DevicePool

            return DevicePool(ctx.devices, load, quiet=not ctx.show_progress)
        return load(device=ctx.device)

    def stats(self) -> dict[str, Any]:
        counter = getattr(self.embedder, "counter", None)
        out: dict[str, Any] = {"texts_encoded": counter.texts if counter else 0, "encode_calls": counter.calls if counter else 0}
        workers = getattr(self.embedder, "worker_stats", None)
        if workers is not None:
            out["devices"] = workers()  # what each --devices worker encoded
        return out


def run_evaluate(step: Step, work: Path, session: ModelSession, *, environment: dict[str, Any]) -> dict[str, Any]:
    """Score one cell with mteb and write its files into ``work/results``; returns the summary."""
    from harness.evaluation.results import PerQueryRecorder, main_scores, write_task_result
    from harness.evaluation.scoring import score_task

    cell: Cell = step.spec
    rt = cell.task
    session.ensure()
    encoder, embedder, mp = session.encoder, session.embedder, session.mp
    rt.load()
    recorder = PerQueryRecorder(rt.task)
    start = time.monotonic()
    encoder.prefixes_seen.clear()
    try:
        task_result = score_task(encoder, rt, batch_size=mp.spec.batch_size)
    finally:
        rt.task.__dict__.pop("task_specific_scores", None)  # drop the per-query hook
    provenance = {
        **environment,
        "model": {"name": mp.spec.name, "reference": mp.spec.model or f"train step {mp.train.key}",  # type: ignore[union-attr]
                  "revision": mp.revision, "fingerprint": embedder.fingerprint, "encode": embedder.describe(),
                  "content": mp.content, "backend": mp.decision.to_json(),
                  # the base entry (or reference) it was trained from: how a report pairs it with its base
                  **({"train_step": mp.train.key, "trained_from": mp.spec.train.base}  # type: ignore[union-attr]
                     if mp.train is not None else {})},
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


class EvaluateSession:
    """The unit of one group: the embedding cache open once, one :class:`ModelSession` per model entry.

    Models loaded in this process are kept in the context (as before); device pools belong to the
    unit and are stopped with it, so their workers free the devices for the next unit's model.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.cache = EmbeddingCache(ctx.caches.embeddings)
        self.sessions: dict[str, ModelSession] = {}  # entries on the same weights share the loaded model
        self.pools: dict[str, Any] = {}  # weights key -> DevicePool (--devices)

    def __call__(self, step: Step, work: Path) -> dict[str, Any]:
        from harness.steps.train import model_path

        cell: Cell = step.spec
        mp = cell.model
        session = self.sessions.get(mp.spec.name)
        if session is None:
            if mp.train is not None:  # its train step is done now: load what it exported
                mp = mp.with_export(model_path(self.ctx.step_dir(mp.train)))
            loaded = self.pools if len(self.ctx.devices) > 1 else self.ctx.loaded_models
            session = self.sessions[mp.spec.name] = ModelSession(mp, cache=self.cache, overrides=cell.overrides, ctx=self.ctx,
                                                                 loaded=loaded)
        return run_evaluate(step, work, session, environment=self.ctx.environment)

    def stats(self) -> dict[str, Any]:
        # cumulative per loaded model: entries sharing weights report the same counter
        encode = {name: s.stats() for name, s in self.sessions.items() if s.embedder is not None}
        return {"encode": encode, "cache": {"hits": self.cache.hits, "misses": self.cache.misses, "damaged": self.cache.damaged}}

    def close(self) -> None:
        try:
            for pool in self.pools.values():
                if hasattr(pool, "close"):  # an API model's client is kept here too, and has nothing to stop
                    pool.close()
        finally:
            self.cache.close()


class EvaluateKind:
    name = EVALUATE
    code_version = "1"  # bump when evaluation code changes what a result means
    resumes = False
    exclusive = False  # small models evaluate side by side on separate cores

    def plan(self, cell: Cell) -> Step[Cell]:
        mp, rt = cell.model, cell.task
        instr = rt.spec.instruction
        params = {
            "model": mp.key,
            "name": mp.spec.name,  # results are filed under it: a renamed entry must write them anew
            "task": rt.name,
            "subsets": rt.subsets,
            "splits": rt.splits,
            "instruction": instr if isinstance(instr, (str, type(None))) else instr.model_dump(),
            "data": rt.data_fingerprint(),
            **({"unknown_qrels": "drop"} if rt.spec.unknown_qrels == "drop" else {}),
            "mteb": _version("mteb"),
        }
        inputs = [mp.train] if mp.train is not None else []
        return Step(kind=EVALUATE, label=f"evaluate {cell.label}", params=params, inputs=inputs,
                    code_version=self.code_version, spec=cell, gpu=True, group=mp.weights_key())

    @contextmanager
    def session(self, steps: list[Step], ctx: RunContext) -> Iterator[EvaluateSession]:
        unit = EvaluateSession(ctx)
        try:
            yield unit
        finally:
            unit.close()

    def after_commit(self, step: Step, step_dir: Path, ctx: RunContext) -> None:
        from harness.evaluation.results import results_dir

        mp = step.spec.model
        publish(step_dir, results_dir(ctx.output, mp.spec.name, mp.revision))

    def environment(self, step: Step) -> set[str]:
        """The entry's endpoint and key variables (an API model re-checks them where it runs)."""
        spec: ModelSpec = step.spec.model.spec
        return {spec.api_key_env, spec.base_url_env}

    def unit_label(self, steps: list[Step]) -> str:
        names = list(dict.fromkeys(s.spec.model.spec.name for s in steps))
        return f"evaluate {', '.join(names)} ({len(steps)} cells)"

    def title(self, step: Step) -> str:
        return step.spec.label

    def describe_summary(self, summary: dict[str, Any]) -> str:
        scores: dict[str, dict[str, float | None]] = summary.get("main_scores", {})
        return ", ".join(f"{split}/{subset}={v:.5f}" for split, subsets in scores.items()
                         for subset, v in subsets.items() if v is not None)

    def log_name(self, step: Step) -> str:
        return f"{step.spec.model.spec.name}__{step.spec.task.name}"

    def progress(self, step: Step, work: Path) -> str | None:
        return None

    def caches(self, step: Step, ctx: RunContext) -> list[CacheUse]:
        uses = [CacheUse("embeddings", ctx.caches.embeddings, "read-write")]
        if step.spec.model.train is not None:
            uses.append(CacheUse("dense-gguf", ctx.caches.dense / "dense", "read"))
        return uses

    def estimate(self, step: Step, ctx: RunContext) -> Estimate:
        return estimate_evaluate(step.spec)


KIND = EvaluateKind()


def _model_params(mp: ModelPlan) -> tuple[float, str] | None:
    from harness.evaluation.models.size import model_params
    from harness.steps.train import base_params

    if mp.train is not None:
        return base_params(mp.train.spec)
    revision = mp.resolved.identity.hub_commit if mp.resolved else mp.spec.revision
    return model_params(mp.spec.model or "", mp.source.parent, gguf_file=mp.spec.gguf_file, revision=revision)


def estimate_evaluate(cell: Cell) -> Estimate:
    """The distinct texts the task encodes, each at min(characters / 4, max_length) tokens, 2·N·tokens
    (forward only) at the encode anchor of ../shared/NOTES.md (bf16, length-sorted, adapters merged)."""
    from harness.evaluation.text_counts import task_profile

    mp, rt = cell.model, cell.task
    profile = task_profile(rt)
    if profile is None:
        return Estimate(summary=f"no estimate: mteb ships no descriptive statistics for {rt.name}", gpu_hours=None)
    groups, source = profile
    max_len = mp.spec.max_length or mp.decision.max_seq_length or 512
    texts = sum(n for n, _ in groups)
    tokens = sum(n * min(mean / CHARS_PER_TOKEN, max_len) for n, mean in groups)
    details: dict[str, Any] = {"texts": round(texts), "tokens": round(tokens), "max_length": max_len}
    head = f"{big(texts)} texts, {big(tokens)} tokens"
    if mp.decision.backend == "openai":
        return Estimate(summary=f"{head} sent to the embeddings API (not priced here)", details=details)
    size = _model_params(mp)
    if size is None:
        return Estimate(summary=f"{head}; no GPU estimate (model size unknown offline)", gpu_hours=None, details=details)
    n, where = size
    fp32 = mp.spec.dtype == "float32"
    flops = 2 * n * tokens
    hours = flops / (ENCODE_MFU * (PEAK_FP32 if fp32 else PEAK_BF16)) / 3600
    details.update(params=n, flops=flops, mfu=ENCODE_MFU)
    summary = (f"{head}; 2·N·tokens (N={big(n)}) ≈ {gpu_time(hours)} at MFU {ENCODE_MFU:g}"
               + (" of the fp32 peak (dtype: float32)" if fp32 else ""))
    assumptions = (f"texts from {source}; tokens = min(chars/{CHARS_PER_TOKEN:g}, max_length {max_len}); "
                   f"N from {where}; encode anchor ../shared/NOTES.md (bf16, length-sorted, adapters merged)"
                   + ("; measured in bf16, fp32 taken at the 67 TFLOP/s fp32 peak" if fp32 else "")
                   + "; embedding-cache hits not subtracted")
    return Estimate(summary=summary, gpu_hours=hours, assumptions=assumptions, details=details)
