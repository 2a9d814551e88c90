"""The train kind: ``trainers.train`` on a matrix model's ``train:`` entry (base x mixture x recipe).

Key: the recipe (every field that changes the weights, pooling included), the base model's content
identity (for a GGUF base: the chosen file; for a trained base: its train step's key), the mixture
with each local source by its content, and the keys of the generate steps it reads. No path is in
the key: moving the checkout or the run folder does not retrain; changing a byte of the data does.

The trainer works in the step's work directory, which survives a kill: its checkpoints make a
re-run resume from the last one. When it finishes, the checkpoints (gigabytes for a 7B model, and
useless once the model is exported) are discarded before the directory is renamed into place; the
trainer recognises a complete export without them, so every kill point resumes.

Cache: a GGUF base is trained from its dense copy in the run-level cache (``<run>/cache/dense``),
keyed by the GGUF file's bytes and visible to every node that sees the run folder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError
from trainers.config import EXECUTION

from harness.errors import InputError
from harness.evaluation.dev_scorer import dev_scorer_for
from harness.schema import LoadedMatrix, MixtureSpec
from harness.steps.base import TRAIN, CacheUse, Estimate, Step
from harness.steps.kind import OneStepNames, StepRunner
from harness.steps.context import RunContext
from harness.steps.generate import GenerateSpec
from harness.steps.quantities import GPU, PEAK_BF16, PEAK_FP32, big, gpu_time

MODEL = "model"  # the exported sentence-transformers directory inside the step directory
# Recipe fields that are the matrix's to set (base, data) or that do not change what is computed
# (trainers.config.EXECUTION: output, logging and checkpoint cadence, device, and the memory/speed
# settings — GradCache, checkpointing, compile — whose loss and gradients are the full batch's):
# lowering mini_batch_size after an out-of-memory resumes the same step instead of retraining.
MATRIX_FIELDS = {"base_model", "gguf_file", "revision", "data"}
NOT_RECIPE = MATRIX_FIELDS | EXECUTION
REGISTRY_EXAMPLES_PER_WEIGHT = 1000  # trainers/data/registry.py: weights are ≈ thousands of examples
# docs/benchmarks.md, "Training on a GPU" (one H200, Mistral-7B shape, LoRA r=16).
TRAIN_ANCHORS = {
    "plain": (0.226, "no compile (anchor row: LoRA dropout 0.1, checkpointing)"),
    "ckpt": (0.361, "compile + checkpointing"),
    "selective12": (0.417, "compile + selective checkpointing (12 blocks kept)"),
    "selective8": (0.397, "compile + selective checkpointing (8 blocks kept)"),
    "gradcache": (0.348, "compile + GradCache, no checkpointing"),
    "none": (0.498, "compile, no recompute"),
}


@dataclass
class TrainSpec:
    """What the runner needs: the trainer's config inputs, every path absolute (resolved at plan time)."""

    name: str
    source: Path  # the matrix file: for messages only
    recipe: dict[str, Any]
    base: str  # the trainer's base_model: pkg:/hub as written, a local path absolute; "" for a train step's output
    gguf_file: str | None
    data: dict[str, Any]  # a trainer DataSpec; ``generated`` sources still name their step
    generated: dict[str, Step[GenerateSpec]] = field(default_factory=dict)  # generate name -> step
    base_step: Step[TrainSpec] | None = None
    revision: str | None = None  # a hub base's resolved commit: the trainer loads exactly what the key names


def model_path(step_dir: Path) -> Path:
    return step_dir / MODEL


def build_config(spec: TrainSpec, step_dir_of: Callable[[Step], Path] | None, *, validate_only: bool = False) -> Any:
    """The trainer's config for this step. ``step_dir_of(step)`` locates a finished input step."""
    from trainers.config import TrainConfig

    from harness.steps.generate import examples_path

    data = dict(spec.data)
    if data.get("sources") is not None:
        sources = []
        for src in data["sources"]:
            if src.get("kind") == "generated":
                gen = spec.generated[src["generate"]]
                path = "<generated>" if validate_only else str(examples_path(step_dir_of(gen)))  # type: ignore[misc]
                src = {k: v for k, v in src.items() if k != "generate"} | {"kind": "synthetic", "path": path}
            sources.append(src)
        data["sources"] = sources
    if spec.base_step is not None:
        base = "<trained>" if validate_only else str(model_path(step_dir_of(spec.base_step)))  # type: ignore[misc]
    else:
        base = spec.base
    revision = spec.revision if spec.base_step is None else None
    return TrainConfig.model_validate({**spec.recipe, "base_model": base, "gguf_file": spec.gguf_file,
                                       "revision": revision, "data": data, "name": spec.name})


def recipe_error(matrix: Path, field_name: str, exc: ValidationError) -> InputError:
    from inputio import field_problem
    from trainers.config import TrainConfig

    fp = field_problem(exc, allowed=[f for f in TrainConfig.model_fields if f not in MATRIX_FIELDS | {"output", "name", "device"}], docs="docs/training.md")
    return InputError(matrix, f"{field_name}.{fp.field}" if fp.field else field_name, fp.problem, fp.fix)


# --- planning -------------------------------------------------------------------------------------

def _fingerprint_path(path: Path) -> str:
    from contentid import directory_fingerprint, file_digest

    return file_digest(path) if path.is_file() else directory_fingerprint(path)


def _require_local_copy(source: str, matrix: Path, field_name: str, how: str) -> None:
    """Registry sources with no hub copy (the synthetic set, BEIR-layout folders) fail at train time
    without a local path: say so now, before anything runs."""
    from trainers.data.registry import REGISTRY, BeirLoader

    entry = REGISTRY[source]
    if entry.loader is None:
        raise InputError(matrix, field_name, "the synthetic source needs generated data and none is given",
                         "list the mixture as sources: with {kind: generated, generate: <generate entry>} (or give "
                         "a path to a generator's output)")
    if isinstance(entry.loader, BeirLoader):
        raise InputError(matrix, field_name, f"{entry.title} has no ready-made hub copy; training reads it from a local folder",
                         f"prepare {entry.loader.how} and add '{how}', or leave the source out")


@dataclass
class PlannedMixture:
    """A mixture as the train steps use it: canonical params (by content) and the trainer's DataSpec."""

    params: dict[str, Any]  # what the key hashes: local sources by content, generated ones by step key
    data: dict[str, Any]  # the trainer's DataSpec, paths absolute, generated sources naming their entry
    inputs: list[Step[GenerateSpec]]  # the generate steps it reads
    where: str = "mixtures"  # how errors name it in the matrix: "mixtures[j] (name: ...)"


def plan_mixture(mix: MixtureSpec, where: str, loaded: LoadedMatrix, generated: dict[str, Step]) -> PlannedMixture:
    """Validate one mixture against the trainer's schema and registry (bad input fails before anything runs)."""
    from trainers.data.registry import REGISTRY, closest, get_preset
    from trainers.data.spec import DataSpec
    from trainers.errors import TrainInputError

    src_path = loaded.path
    data: dict[str, Any] = mix.model_dump(exclude={"name"}, exclude_none=True)
    canon: dict[str, Any] = mix.model_dump(exclude={"name"}, exclude_none=True)
    placeholder, inputs, canon_sources, data_sources = [], [], [], []
    for j, src in enumerate(mix.sources or []):
        f = f"{where}.sources[{j}]"
        if not isinstance(src, dict) or "kind" not in src:
            raise InputError(src_path, f, "a source needs 'kind:'", "use kind: generated | synthetic | beir | pairs | hub | registry")
        if src["kind"] == "generated":
            extra = set(src) - {"kind", "generate", "name", "instruction", "weight", "max_examples", "hard_negatives"}
            if extra:
                raise InputError(src_path, f"{f}.{sorted(extra)[0]}", "unknown field for a generated source",
                                 "allowed: generate, name, instruction, weight, max_examples, hard_negatives")
            gen = src.get("generate")
            if gen not in generated:
                raise InputError(src_path, f"{f}.generate", f"names no generate entry ({gen!r})",
                                 f"use one of: {', '.join(generated) or '(none: add a generate: entry to the matrix)'}")
            inputs.append(generated[gen])
            placeholder.append({k: v for k, v in src.items() if k != "generate"} | {"kind": "synthetic", "path": "<generated>"})
            canon_sources.append({k: v for k, v in src.items() if k != "generate"} | {"generated": generated[gen].key})
            data_sources.append(dict(src))
            continue
        if src["kind"] == "registry" and src.get("source") not in REGISTRY:
            raise InputError(src_path, f"{f}.source", f"unknown training source {src.get('source')!r}",
                             closest(str(src.get("source")), list(REGISTRY)))
        if src["kind"] == "registry" and src.get("path") is None:
            _require_local_copy(str(src["source"]), src_path, f"{f}.path", "path: <folder>")
        canon_src, data_src = dict(src), dict(src)
        for key in ("path", "data_files"):
            value = src.get(key)
            if value is None:
                continue
            prints, absolute = [], []
            for item in ([value] if isinstance(value, str) else list(value)):
                p = loaded.resolve(Path(str(item)))
                if not p.exists():
                    raise InputError(src_path, f"{f}.{key}", f"{p} does not exist", "fix the path (relative to the matrix file)")
                prints.append(f"content:{_fingerprint_path(p)}")
                absolute.append(str(p))
            canon_src[key] = prints[0] if isinstance(value, str) else prints
            data_src[key] = absolute[0] if isinstance(value, str) else absolute
        placeholder.append(src)
        canon_sources.append(canon_src)
        data_sources.append(data_src)
    raw = mix.model_dump(exclude={"name"}, exclude_none=True)
    if mix.sources is not None:
        raw["sources"] = placeholder
    try:
        DataSpec.model_validate(raw)
    except ValidationError as exc:
        from inputio import field_problem

        fp = field_problem(exc, docs="docs/training-data.md")
        raise InputError(src_path, f"{where}.{fp.field}" if fp.field else where, fp.problem,
                         "see docs/training-data.md for the source kinds and their fields") from None
    if mix.preset is not None:
        try:
            names = get_preset(mix.preset, where)
        except TrainInputError as exc:
            raise InputError(src_path, f"{where}.preset", exc.problem, exc.fix) from None
        for name in names:
            if name not in mix.paths:
                _require_local_copy(name, src_path, f"{where}.paths.{name}", f"paths: {{{name}: <folder>}}")
        for name, p in mix.paths.items():
            resolved = loaded.resolve(Path(p))
            if not resolved.exists():
                raise InputError(src_path, f"{where}.paths.{name}", f"{resolved} does not exist", "fix the path (relative to the matrix file)")
            canon["paths"][name] = f"content:{_fingerprint_path(resolved)}"
            data["paths"][name] = str(resolved)
    else:
        canon["sources"] = canon_sources
        data["sources"] = data_sources
    return PlannedMixture(params=canon, data=data, inputs=inputs, where=where)


def check_negatives(cfg: Any, spec: TrainSpec, mixture: PlannedMixture, recipe_field: str) -> None:
    """The trainer's hard-negative rule (``trainers.data.mixture.check_source_negatives``) at plan time.

    A source that cannot give every example the hard negatives its batches use (a hub copy without
    a negatives column, a BEIR folder set to mine fewer) fails ``harness validate``/``plan`` here,
    naming the matrix field, instead of failing the train step after its generate steps were paid.
    ``generated`` sources are not checked: their data does not exist yet (and every synthetic row
    carries a hard negative; :meth:`trainers.data.mixture.Mixture.check_negatives` checks the rows).
    """
    from trainers.data.mixture import check_source_negatives, source_entries
    from trainers.errors import TrainInputError

    base_dir = spec.source.parent  # every local path of the mixture is absolute already
    try:
        entries = source_entries(cfg.data, base_dir)
    except TrainInputError as exc:
        raise InputError(spec.source, mixture.where, exc.problem, exc.fix) from None
    kinds = [src.get("kind") for src in spec.data.get("sources") or []]
    for i, entry in enumerate(entries):
        if kinds and kinds[i] == "generated":
            continue
        try:
            check_source_negatives(entry, base_dir, cfg.hard_negatives)
        except TrainInputError as exc:
            if kinds:
                where = f"{mixture.where}.sources[{i}]"
            else:  # a preset's source: its local copy, or the preset itself
                where = f"{mixture.where}.paths.{entry.name}" if entry.spec.path else f"{mixture.where}.preset"
            problem = exc.problem
            if entry.spec.hard_negatives is None:  # the count comes from the model entry's recipe
                how = "" if "hard_negatives" in spec.recipe else ", the trainer's default"
                problem += f" ({cfg.hard_negatives} is the hard_negatives of {recipe_field}{how})"
            raise InputError(spec.source, f"{where}.{exc.field}", problem, exc.fix) from None


class TrainKind(OneStepNames):
    name = TRAIN
    code_version = "2"  # 2: content-keyed trainer identity; dense copies in the run-level cache
    resumes = True
    exclusive = True  # a training process owns the machine's accelerator and seeds torch's global RNG

    def plan(self, spec: TrainSpec, *, base_identity: str, mixture: PlannedMixture, field_name: str) -> Step[TrainSpec]:
        """The train step of one matrix entry; the recipe is validated against the trainer's schema now."""
        from trainers.errors import TrainInputError
        from trainers.trackers import check_trackers

        try:
            cfg = build_config(spec, None, validate_only=True)
        except ValidationError as exc:
            raise recipe_error(spec.source, field_name, exc) from None
        check_negatives(cfg, spec, mixture, field_name)
        try:  # a tracker that is not installed fails the plan, not the train step hours later
            check_trackers(cfg.report_to, spec.source)
        except TrainInputError as exc:
            raise InputError(spec.source, f"{field_name}.report_to", exc.problem, exc.fix) from None
        recipe_params = cfg.model_dump(mode="json", exclude=NOT_RECIPE)
        scorer = dev_scorer_for(cfg, source=spec.source, field=f"{field_name}.eval_task")  # checked now, not hours later
        if cfg.select_best and scorer is not None:  # the export is the best dev step's: the dev task decides it
            recipe_params["dev"] = {"every": cfg.eval_every, "scorer": scorer.identity}
        if cfg.miner is not None:  # the model that mines hard negatives, by what it is, not where
            from harness.evaluation.models.identity import model_identity
            from harness.evaluation.models.reference import resolve_reference

            ref = resolve_reference(cfg.miner, spec.source.parent, spec.source, field=f"{field_name}.miner")
            recipe_params["miner"] = model_identity(ref, source=spec.source, field=f"{field_name}.miner").content
        inputs = list(dict.fromkeys([*mixture.inputs, *([spec.base_step] if spec.base_step else [])]))
        return Step(kind=TRAIN, label=f"train {spec.name}", code_version=self.code_version, inputs=inputs, spec=spec,
                    gpu=True, params={"recipe": recipe_params, "base": base_identity, "mixture": mixture.params})

    @contextmanager
    def session(self, steps: list[Step], ctx: RunContext) -> Iterator[StepRunner]:
        def run(step: Step, work: Path) -> dict[str, Any]:
            from trainers.checkpoints import discard_checkpoints
            from trainers.train import prepare, train

            spec: TrainSpec = step.spec
            cfg = build_config(spec, ctx.step_dir)
            start = time.monotonic()
            prepared = prepare(cfg, config_path=spec.source, output=work, cache_dir=ctx.caches.dense,
                               dev_scorer=dev_scorer_for(cfg, source=spec.source))
            result = train(cfg, config_path=spec.source, prepared=prepared,
                           provenance={**ctx.environment, "train_step_key": step.key}, progress=ctx.show_progress)
            discard_checkpoints(work)  # whole or absent: a kill here costs no training step (the export says done)
            return {"steps": result.steps, "final_loss": result.losses[-1] if result.losses else None,
                    "resumed_from": result.resumed_from, "model": MODEL, "seconds": round(time.monotonic() - start, 3)}

        yield run

    def after_commit(self, step: Step, step_dir: Path, ctx: RunContext) -> None:
        return None

    def environment(self, step: Step) -> set[str]:
        return set()

    def describe_summary(self, summary: dict[str, Any]) -> str:
        loss = summary.get("final_loss")
        return f"{summary.get('steps')} steps, final loss {loss:.4f}" if isinstance(loss, float) else ""

    def progress(self, step: Step, work: Path) -> str | None:
        done = resumes_from(work)
        return f"resumes from its checkpoint at step {done}" if done else None

    def caches(self, step: Step, ctx: RunContext) -> list[CacheUse]:
        spec: TrainSpec = step.spec
        gguf = spec.gguf_file or spec.base.endswith(".gguf") or (spec.base and Path(spec.base).is_dir()
                                                                and any(Path(spec.base).glob("*.gguf")))
        return [CacheUse("dense-gguf", ctx.caches.dense / "dense", "read-write")] if gguf else []

    def estimate(self, step: Step, ctx: RunContext) -> Estimate:
        return estimate_train(step, done=resumes_from(ctx.work_dir(step)) or 0)


KIND = TrainKind()


def resumes_from(work: Path) -> int | None:
    """The step of the newest complete checkpoint a killed try left in ``work`` (None: none).

    The same key means the same recipe and data, so a checkpoint in the step's own work directory
    always belongs to this training: a re-run trains only the steps after it.
    """
    if not work.is_dir():
        return None
    from trainers.checkpoints import checkpoints

    found = checkpoints(work)
    return found[-1][0] if found else None


# --- estimate -------------------------------------------------------------------------------------

def train_mfu(cfg: Any) -> tuple[float, str]:
    """The MFU docs/benchmarks.md measured for the settings closest to this recipe's.

    Unset (auto) settings are what the trainer chooses on CUDA (trainers/execution.py): compile on,
    checkpointing with as many blocks kept as memory allows — taken as the 12-kept anchor; with
    GradCache a mini-batch's activations fit, so none is recomputed."""
    compiled = cfg.compile is not False
    checkpointing = cfg.gradient_checkpointing or (cfg.gradient_checkpointing is None and not cfg.mini_batch_size)
    kept = 12 if cfg.uncheckpointed_layers is None else cfg.uncheckpointed_layers
    if not compiled:
        key = "plain"
    elif checkpointing:
        key = "selective12" if kept >= 12 else "selective8" if kept >= 8 else "ckpt"
    elif cfg.mini_batch_size:
        key = "gradcache"
    else:
        key = "none"
    return TRAIN_ANCHORS[key]


def _positive_qrels(path: Path) -> int:
    n = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                try:
                    n += float(parts[-1]) > 0
                except ValueError:  # the header line
                    pass
    return n


def local_examples(path: Path, split: str = "train") -> int | None:
    """Examples a local training source yields: BEIR = positive qrels of the split; JSONL = rows."""
    from harness.evaluation.text_counts import count_lines

    if path.is_dir():
        qrels = path / "qrels" / f"{split}.tsv"
        if qrels.is_file():
            return _positive_qrels(qrels)
        path = path / "examples.jsonl"
    if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz")):
        return count_lines(path)[0]
    return None


def training_examples(spec: TrainSpec) -> tuple[int | None, bool, list[str]]:
    """(examples, approximate?, notes) of the step's mixture (``generated`` sources by their request)."""
    from trainers.data.registry import PRESETS, REGISTRY

    from harness.steps.generate import generated_example_count

    data = spec.data
    if data.get("preset") is not None:
        sources = [{"kind": "registry", "source": n, **({"path": data["paths"][n]} if n in data.get("paths", {}) else {})}
                   for n in PRESETS[data["preset"]]]
    else:
        sources = list(data.get("sources") or [])
    total, approx, notes = 0, False, []
    for src in sources:
        kind, n = src["kind"], None
        name = src.get("name") or src.get("source") or src.get("generate") or src.get("dataset") or src.get("path")
        if kind == "generated":
            n = generated_example_count(spec.generated[src["generate"]])
            notes.append(f"{name}: {n:,} requested (before rejects)")
        elif kind in ("synthetic", "pairs", "beir") or (kind == "registry" and src.get("path")):
            path = Path(src["path"])
            n = local_examples(path, src.get("split", "train"))
            if kind == "beir" or (n is not None and (path / "qrels").is_dir()):
                notes.append(f"{name}: hard-negative mining over its corpus not counted")
        elif kind == "registry":
            n = round(REGISTRY[src["source"]].weight * REGISTRY_EXAMPLES_PER_WEIGHT)
            approx = True
        if n is not None and src.get("max_examples"):
            n = min(n, int(src["max_examples"]))
        elif n is None and src.get("max_examples"):
            n, approx = int(src["max_examples"]), True
            notes.append(f"{name}: size unknown offline, taken as its max_examples")
        if n is None:
            notes.append(f"{name}: size unknown offline")
            return None, approx, notes
        total += n
    if approx:
        notes.append("registry sources: weight × 1,000 examples (approx.)")
    return total, approx, notes


def base_params(spec: TrainSpec) -> tuple[float, str] | None:
    """Parameters of the model a train step starts from (a trained base: its own base's)."""
    from harness.evaluation.models.size import model_params

    if spec.base_step is not None:
        return base_params(spec.base_step.spec)
    return model_params(spec.base, spec.source.parent, gguf_file=spec.gguf_file, revision=spec.revision)


def estimate_train(step: Step[TrainSpec], *, done: int = 0) -> Estimate:
    """Steps × batch × tokens at every text's max length (an upper bound), at the MFU measured on
    one H200 for the recipe's settings: 4·N·tokens for LoRA (frozen base), 6·N·tokens for a full
    fine-tune. ``done``: steps a killed try finished (its newest checkpoint); only the rest are counted."""
    from trainers.engine import steps_for

    spec: TrainSpec = step.spec
    cfg = build_config(spec, None, validate_only=True)
    examples, approx, notes = training_examples(spec)
    if cfg.max_steps is not None:
        steps = cfg.max_steps
    elif examples is not None:
        steps = steps_for(examples, cfg.batch_size, cfg.epochs or 1.0)
    else:
        return Estimate(summary=f"no estimate: {'; '.join(notes)} (set max_steps, or max_examples on the source)",
                        gpu_hours=None, details={"examples": None})
    left = max(steps - done, 0)
    per_example = cfg.query_max_length + (1 + cfg.hard_negatives) * cfg.passage_max_length
    tokens = left * cfg.batch_size * per_example
    details: dict[str, Any] = {"examples": examples, "examples_approx": approx, "steps": steps, "steps_done": done,
                               "steps_left": left, "batch_size": cfg.batch_size,
                               "tokens_per_example_max": per_example, "tokens": tokens}
    counted = f"{left:,} of {steps:,} steps left (resumes from step {done})" if done else f"{steps:,} steps"
    head = (f"{counted}{' (examples approx.)' if approx else ''} × {cfg.batch_size:,} examples × "
            f"≤{per_example:,} tokens = {big(tokens)} tokens")
    size = base_params(spec)
    if size is None:
        return Estimate(summary=f"{head}; no GPU estimate (base model size unknown offline)", gpu_hours=None,
                        assumptions="; ".join(notes), details=details)
    n, where = size
    lora = cfg.lora is not None
    factor = 4 if lora else 6
    flops = factor * n * tokens
    mfu, anchor = train_mfu(cfg)
    fp32 = cfg.precision == "fp32"
    hours = flops / (mfu * (PEAK_FP32 if fp32 else PEAK_BF16)) / 3600
    details.update(params=n, flops=flops, mfu=mfu)
    summary = (f"{head}; {factor}·N·tokens (N={big(n)}) = {flops:.3g} FLOP ≈ {gpu_time(hours)} "
               f"at MFU {mfu:g}{' of the fp32 peak' if fp32 else ''}")
    assumptions = "; ".join([
        f"every text at its max length (upper bound); N from {where}",
        f"{'LoRA: frozen base, no weight gradients' if lora else 'full fine-tune (the MFU anchors were measured with LoRA)'}",
        f"MFU {mfu:g} = docs/benchmarks.md '{anchor}' on one {GPU}"
        + (" (measured in bf16; fp32 taken at the 67 TFLOP/s fp32 peak)" if fp32 else ""),
        *notes])
    return Estimate(summary=summary, gpu_hours=hours, assumptions=assumptions, details=details)

