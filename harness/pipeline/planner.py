"""The planner: matrix -> one DAG of generate / train / evaluate steps with content keys.

Everything that can be checked is checked here, before anything is written: every model reference
and train base exists, every mixture source names a known generate entry, registry source or
preset and its local files exist, no train entry depends on itself, every task and data folder is
valid. A trained model needs no weights to be planned: its key derives from its train step's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.evaluation.models.backend import BackendDecision
from harness.evaluation.models.loader import resolve_model
from harness.evaluation.models.reference import ModelReference
from harness.evaluation.tasks import ResolvedTask, resolve_task
from harness.pipeline.preflight import check_api_keys, check_cache_dir, check_output_dir
from harness.schema import LoadedMatrix, ModelSpec, TaskSpec
from harness.steps import evaluate as evaluate_kind
from harness.steps import generate as generate_kind
from harness.steps import train as train_kind
from harness.steps.base import TRAIN, Step, canonical_hash
from harness.steps.caches import RunCaches, run_caches
from harness.steps.context import RunContext
from harness.steps.evaluate import Cell, ModelPlan
from harness.steps.store import ArtifactStore
from harness.steps.train import PlannedMixture, TrainSpec


@dataclass
class Plan:
    loaded: LoadedMatrix
    output: Path
    models: list[ModelPlan]
    tasks: list[ResolvedTask]
    cells: list[Cell]
    steps: list[Step]  # topological order: every step after its inputs
    notes: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Step]:
        return [s for s in self.steps if s.kind == kind]

    def cached(self, step: Step) -> bool:
        return ArtifactStore(self.output).is_done(step.kind, step.key)

    @property
    def caches(self) -> RunCaches:
        return run_caches(self.output, self.loaded)

    def context(self, *, device: str | None = None, devices: tuple[str, ...] = (), show_progress: bool = False,
                environment: dict[str, Any] | None = None) -> RunContext:
        """What the kinds get to run or estimate this plan's steps: the run folder, its caches, the device(s)."""
        return RunContext(output=self.output, caches=self.caches, device=device, devices=devices,
                          show_progress=show_progress, environment=environment or {})


def _where(kind: str, index: int, name: str | None) -> str:
    return f"{kind}[{index}]" + (f" (name: {name})" if name else "")


# --- models ---------------------------------------------------------------------------------------

def _settings(spec: ModelSpec) -> dict[str, Any]:
    return spec.model_dump(exclude={"name", "base_url_env", "api_key_env", "train", "model"})


def _external(spec: ModelSpec, loaded: LoadedMatrix) -> ModelPlan:
    resolved = resolve_model(spec, loaded.base_dir, loaded.path)
    key = canonical_hash({"content": resolved.identity.content, "settings": _settings(spec) | {"model": spec.model},
                          "backend": resolved.decision.to_json()})
    return ModelPlan(spec=spec, key=key, source=loaded.path, resolved=resolved)


def _recipe(spec: ModelSpec, where: str, loaded: LoadedMatrix) -> dict[str, Any]:
    """The recipe as a mapping, its one path (``eval_task.data``) made absolute: relative to the
    recipe file when the recipe is a file, else to the matrix file."""
    from inputio import read_yaml_mapping

    recipe = spec.train.recipe  # type: ignore[union-attr]
    if recipe is None:
        return {}
    if isinstance(recipe, dict):
        return _absolute_eval_data(dict(recipe), loaded.base_dir)
    path = loaded.resolve(recipe)
    if not path.is_file():
        raise InputError(loaded.path, f"{where}.train.recipe", f"recipe file {path} does not exist",
                         "fix the path (relative to the matrix file), or write the recipe inline as a mapping")
    return _absolute_eval_data(read_yaml_mapping(path, InputError, "a recipe is a training config without base_model/data "
                                                 "(docs/training.md)"), path.parent)


def _absolute_eval_data(recipe: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    task = recipe.get("eval_task")
    if isinstance(task, dict) and isinstance(task.get("data"), str) and not Path(task["data"]).expanduser().is_absolute():
        recipe["eval_task"] = {**task, "data": str((base_dir / task["data"]).resolve())}
    return recipe


class _ModelPlanner:
    """Plans model entries in dependency order (a trained base first), detecting cycles."""

    def __init__(self, loaded: LoadedMatrix, generated: dict[str, Step], mixtures: dict[str, PlannedMixture]) -> None:
        self.loaded, self.generated, self.mixtures = loaded, generated, mixtures
        self.specs = {m.name: (i, m) for i, m in enumerate(loaded.matrix.models)}
        self.done: dict[str, ModelPlan] = {}
        self.visiting: list[str] = []
        self.notes: list[str] = []

    def plan(self, name: str) -> ModelPlan:
        if name in self.done:
            return self.done[name]
        index, spec = self.specs[name]
        where = _where("models", index, name)
        if name in self.visiting:
            cycle = " -> ".join([*self.visiting[self.visiting.index(name):], name])
            raise InputError(self.loaded.path, f"{where}.train.base", f"training cycle: {cycle}",
                             "a model cannot be trained from itself; point one 'base:' at a pretrained model")
        self.visiting.append(name)
        mp = _external(spec, self.loaded) if spec.train is None else self._trained(spec, where)
        if mp.resolved is not None and mp.resolved.decision.guessed:
            self.notes.append(f"model {name}: {mp.resolved.decision.reason}")
        self.visiting.pop()
        self.done[name] = mp
        return mp

    def _trained(self, spec: ModelSpec, where: str) -> ModelPlan:
        t = spec.train
        assert t is not None
        src = self.loaded.path
        if t.mixture not in self.mixtures:
            raise InputError(src, f"{where}.train.mixture", f"names no mixture ({t.mixture!r})",
                             f"use one of: {', '.join(self.mixtures) or '(none: add a mixtures: entry)'}")
        mixture = self.mixtures[t.mixture]
        base_step, base_ref, gguf, base_commit, base_identity, base_backend = self._base(spec, where)
        recipe = _recipe(spec, where, self.loaded)
        bad = sorted(set(recipe) & {"base_model", "data", "output", "revision"})
        if bad:
            raise InputError(src, f"{where}.train.recipe.{bad[0]}", "set by the matrix, not the recipe",
                             "remove it: 'base:' and 'mixture:' of the train entry say which model and data")
        recipe = _with_entry_pooling(recipe, spec, where, src)
        train_spec = TrainSpec(name=spec.name, source=src, recipe=recipe, base=base_ref, gguf_file=gguf, revision=base_commit,
                               data=mixture.data, generated=self.generated, base_step=base_step)
        step = train_kind.KIND.plan(train_spec, base_identity=base_identity, mixture=mixture, field_name=f"{where}.train.recipe")
        # The export of a decoder is an E5-style sentence-transformers directory (last-token pooling),
        # which evaluation routes to the decoder path; an encoder stays an encoder.
        expected = BackendDecision("decoder" if base_backend == "decoder" else "sentence-transformers",
                                   f"trained from a {base_backend} base by step {step.key[:12]}")
        key = canonical_hash({"content": f"train:{step.key}", "settings": _settings(spec)})
        return ModelPlan(spec=spec, key=key, source=src, train=step, expected=expected)

    def _base(self, spec: ModelSpec, where: str) -> tuple[Step | None, str, str | None, str | None, str, str]:
        """(base step, reference, gguf file, hub commit, content identity, backend) of a train entry's base.

        The identity is always that of what the trainer will load: a GGUF entry trained with another
        ``gguf_file:`` is identified by that file, not by the entry's own quantization.
        """
        from harness.evaluation.models.backend import decide_backend
        from harness.evaluation.models.identity import model_identity
        from harness.evaluation.models.reference import resolve_reference

        t = spec.train
        assert t is not None
        src = self.loaded.path
        if t.revision is not None and t.base in self.specs:
            raise InputError(src, f"{where}.train.revision", f"the base {t.base!r} is an entry of this matrix",
                             f"remove it here; pin the commit with 'revision:' on the entry {t.base!r} itself")
        if t.base in self.specs:
            base_plan = self.plan(t.base)
            if base_plan.train is not None:
                return base_plan.train, "", None, None, f"train:{base_plan.train.key}", base_plan.decision.backend
            resolved = base_plan.resolved
            assert resolved is not None
            ident = resolved.identity
            gguf = t.gguf_file or ident.gguf_file
            if gguf != ident.gguf_file:
                base_index = self.specs[t.base][0]
                ident = model_identity(resolved.ref, gguf_file=gguf, revision=ident.hub_commit, source=src,
                                       field=f"{where}.train.gguf_file" if t.gguf_file else f"models[{base_index}].gguf_file")
            ref_value = trainer_reference(base_plan.spec.model or "", resolved.ref)
            return None, ref_value, gguf, ident.hub_commit, ident.content, base_plan.decision.backend
        field_name = f"{where}.train.base"
        ref = resolve_reference(t.base, self.loaded.base_dir, src, field=field_name)
        if ref.kind == "openai":
            raise InputError(src, field_name, "an API model cannot be fine-tuned here", "name a local path, pkg: or hub model")
        if t.revision is not None and ref.kind != "hub":
            raise InputError(src, f"{where}.train.revision", f"'revision:' pins a hub model's commit, but {t.base!r} is a "
                             f"{ref.kind} reference", "remove it: a local base is identified by its files")
        ident = model_identity(ref, gguf_file=t.gguf_file, revision=t.revision, source=src,
                               field=f"{where}.train.revision" if t.revision else field_name)
        # The entry's kind:/pooling: say what the trained model is; offline, where a hub base's own
        # files cannot be read, they are also what decides the base's backend (see decide_backend).
        decision = decide_backend(ref, kind=spec.kind, pooling=spec.pooling, gguf_file=ident.gguf_file,
                                  hub_commit=ident.hub_commit, source=src, field=field_name)
        if decision.guessed:
            self.notes.append(f"model {spec.name}: base {t.base} — {decision.reason}")
        base_ref = trainer_reference(t.base, ref)
        return None, base_ref, ident.gguf_file or t.gguf_file, ident.hub_commit, ident.content, decision.backend


def trainer_reference(written: str, ref: ModelReference) -> str:
    """How the trainer's config names a base (its export records it as the base's ``reference``).

    A ``pkg:`` or hub reference as the user wrote it: it names no place on this machine, so
    evaluation finds the base again after the checkout or the virtual environment moves
    (``trainers.export.resolve_export_base``). A local path absolute: relative, it was relative to
    the matrix file, which neither the trainer's output nor a worker on another node knows.
    """
    return ref.value if ref.kind == "path" and not written.startswith("pkg:") else written


_RECIPE_POOLING = {"last-token": "lasttoken", "mean": "mean", "cls": "cls"}


def _with_entry_pooling(recipe: dict[str, Any], spec: ModelSpec, where: str, src: Path) -> dict[str, Any]:
    """A trained entry's ``pooling:`` is how the model is *trained* to pool, so it is the recipe's
    (and enters the train key), not an evaluation-only setting that would pool differently from training."""
    if spec.pooling == "auto":
        return recipe
    wanted = _RECIPE_POOLING[spec.pooling]
    given = recipe.get("pooling", "auto")
    if given not in ("auto", wanted):
        raise InputError(src, f"{where}.pooling", f"pooling: {spec.pooling} on the entry, but its recipe says pooling: {given}",
                         "set it in one place: the recipe's pooling is what training and evaluation both use")
    return {**recipe, "pooling": wanted}


# --- tasks ----------------------------------------------------------------------------------------

def _expand_tasks(loaded: LoadedMatrix, notes: list[str]) -> list[tuple[int, TaskSpec]]:
    """Benchmarks become their tasks (subset filters kept where they apply); optional absent data is skipped."""
    out: list[tuple[int, TaskSpec]] = []
    seen: set[str] = set()
    for i, spec in enumerate(loaded.matrix.tasks):
        if spec.benchmark is not None:
            import mteb

            try:
                bench = mteb.get_benchmark(spec.benchmark)
            except (KeyError, ValueError):
                import difflib

                names = [b.name for b in mteb.get_benchmarks()]
                close = difflib.get_close_matches(spec.benchmark, names, n=3)
                raise InputError(loaded.path, f"{_where('tasks', i, spec.benchmark)}.benchmark",
                                 f"unknown mteb benchmark {spec.benchmark!r}",
                                 f"did you mean {', '.join(map(repr, close))}?" if close else "see mteb.get_benchmarks() for names") from None
            for task in bench.tasks:
                name = task.metadata.name
                if name in seen:
                    continue
                subsets = [s for s in (spec.subsets or []) if s in task.hf_subsets] or None
                if spec.subsets and subsets is None:
                    continue  # a language filter that leaves nothing of this task
                if subsets is None and len(task.hf_subsets) < len(mteb.get_task(name).hf_subsets):
                    subsets = list(task.hf_subsets)  # the benchmark's own selection, e.g. only 'en' in MTEB(eng, v1)
                splits = [s for s in (spec.splits or []) if s in task.metadata.eval_splits] or None
                seen.add(name)
                out.append((i, spec.model_copy(update={"name": name, "benchmark": None, "subsets": subsets, "splits": splits})))
            continue
        if spec.optional and spec.data is not None and not loaded.resolve(spec.data).is_dir():
            notes.append(f"task {spec.name} skipped: its optional data folder {loaded.resolve(spec.data)} is absent")
            continue
        if spec.name in seen:
            raise InputError(loaded.path, f"{_where('tasks', i, spec.name)}.name", "listed twice (also in a benchmark above)",
                             "remove one of them")
        seen.add(spec.name)  # type: ignore[arg-type]
        out.append((i, spec))
    return out


# --- evaluation -----------------------------------------------------------------------------------

def instruction_overrides(tasks: list[ResolvedTask], spec: ModelSpec) -> dict[str, dict[str, str]]:
    """Task-level overrides, then the model entry's own (which win)."""
    from harness.evaluation.instructions import as_override

    out = {rt.name: as_override(rt.spec.instruction) for rt in tasks if rt.spec.instruction is not None}
    out.update({name: as_override(instr) for name, instr in spec.task_instructions.items()})
    return out


def _declared_overrides(mp: ModelPlan, tasks: list[ResolvedTask]) -> list[tuple[str, str, set[str]]]:
    """(field, task name, sides) of every override that applies to this model entry."""
    out = []
    for i, rt in enumerate(tasks):
        instr = mp.spec.task_instructions.get(rt.name, rt.spec.instruction)
        if instr is None:
            continue
        field_name = (f"models[{mp.spec.name}].task_instructions.{rt.name}" if rt.name in mp.spec.task_instructions
                      else f"tasks[{i}] (name: {rt.name}).instruction")
        sides = {"all"} if isinstance(instr, str) else {k for k, v in instr.model_dump().items() if v is not None}
        out.append((field_name, rt.name, sides))
    return out


def check_instruction_overrides(loaded: LoadedMatrix, models: list[ModelPlan], tasks: list[ResolvedTask]) -> None:
    """An instruction the user wrote must change what is encoded; one that would be ignored is an error."""
    from harness.evaluation.instructions import is_retrieval_like
    from harness.evaluation.models.loader import instruction_mode

    by_name = {rt.name: rt for rt in tasks}
    for mp in models:
        unknown = sorted(set(mp.spec.task_instructions) - set(by_name))
        if unknown:
            raise InputError(loaded.path, f"models[{mp.spec.name}].task_instructions.{unknown[0]}",
                             "names a task that is not in this matrix", f"use one of: {', '.join(sorted(by_name))}")
        backend = mp.decision.backend
        mode = instruction_mode(mp.spec, backend)
        for field_name, task_name, sides in _declared_overrides(mp, tasks):
            rt = by_name[task_name]
            if mode == "none":
                raise InputError(loaded.path, field_name,
                                 f"model {mp.spec.name!r} encodes with instructions: none "
                                 f"({'set in the matrix' if mp.spec.instructions == 'none' else 'the default for ' + backend}), "
                                 "so this instruction would be ignored",
                                 f"set 'instructions: e5' on model {mp.spec.name!r}, or move the instruction into the "
                                 "task_instructions of the models that use it")
            if "document" not in sides:
                continue
            if is_retrieval_like(rt.task_type):
                if mode == "e5":
                    raise InputError(loaded.path, f"{field_name}.document",
                                     f"model {mp.spec.name!r} uses the E5 template, which embeds {rt.task_type} documents "
                                     "bare (one document index serves every instruction), so a document instruction "
                                     "would be ignored", "remove 'document:' (or use a model whose saved prompts take one)")
                continue
            prompt_types = {getattr(getattr(rt.task, a, None), "value", None) for a in ("input1_prompt_type", "input2_prompt_type")}
            if "document" not in prompt_types:
                raise InputError(loaded.path, f"{field_name}.document",
                                 f"{rt.name} ({rt.task_type}) encodes every input the same way, so a document "
                                 "instruction would be ignored", "write the instruction as a plain string or as 'query:'")


def build_plan(loaded: LoadedMatrix, output: Path | None = None, load_data: bool = True) -> Plan:
    """Resolve every step up front so bad input fails before anything is written.

    With ``load_data`` every local data file is parsed now: a malformed qrels line must be
    reported before the first cell writes a result, not an hour into the run.
    """
    m = loaded.matrix
    out_dir = loaded.output_dir(output)
    check_output_dir(out_dir, "--output" if output is not None else "output", None if output is not None else loaded.path)
    check_cache_dir(loaded)
    check_api_keys(loaded)
    notes: list[str] = []
    generated = {g.name: generate_kind.KIND.plan(g.name, loaded.resolve(g.config), loaded.path,
                                                 f"{_where('generate', i, g.name)}.config")
                 for i, g in enumerate(m.generate)}
    mixtures = {mix.name: train_kind.plan_mixture(mix, _where("mixtures", i, mix.name), loaded, generated)
                for i, mix in enumerate(m.mixtures)}
    planner = _ModelPlanner(loaded, generated, mixtures)
    models = [planner.plan(spec.name) for spec in m.models]
    notes.extend(planner.notes)
    tasks = [resolve_task(spec, loaded, i) for i, spec in _expand_tasks(loaded, notes)]
    if not tasks:
        raise InputError(loaded.path, "tasks", "no task left to run (every task is optional and its data is absent)",
                         "add a task whose data is present, e.g. the smoke set")
    if load_data:
        for rt in tasks:
            rt.load()
    check_instruction_overrides(loaded, models, tasks)
    cells: list[Cell] = []
    evaluate_steps: list[Step] = []
    for mp in models:
        overrides = instruction_overrides(tasks, mp.spec)
        for rt in tasks:
            cell = Cell(model=mp, task=rt, overrides=overrides)
            cells.append(cell)
            evaluate_steps.append(evaluate_kind.KIND.plan(cell))
    used = {s.key for mp in models if mp.train for s in _closure(mp.train)}
    unused = [g for g in generated.values() if g.key not in used]
    trains = _topological([mp.train for mp in models if mp.train is not None])
    steps = [*[g for g in generated.values()], *trains, *evaluate_steps]
    for g in unused:
        notes.append(f"{g.label} feeds no train entry (it still runs: its data is an output of this matrix)")
    return Plan(loaded=loaded, output=out_dir, models=models, tasks=tasks, cells=cells, steps=_dedupe(steps), notes=notes)


def _closure(step: Step) -> list[Step]:
    out = [step]
    for s in step.inputs:
        out.extend(_closure(s))
    return out


def _topological(steps: list[Step]) -> list[Step]:
    """Train steps ordered so that a trained base comes before what is trained from it."""
    ordered: list[Step] = []
    seen: set[str] = set()

    def visit(s: Step) -> None:
        if s.key in seen:
            return
        for i in s.inputs:
            if i.kind == TRAIN:
                visit(i)
        seen.add(s.key)
        ordered.append(s)

    for s in steps:
        visit(s)
    return ordered


def _dedupe(steps: list[Step]) -> list[Step]:
    """Two entries with the same key are one step (e.g. two model entries trained identically)."""
    seen: dict[tuple[str, str], Step] = {}
    for s in steps:
        seen.setdefault((s.kind, s.key), s)
    return list(seen.values())
