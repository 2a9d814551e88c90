"""The planner: matrix -> one DAG of generate / train / evaluate steps with content keys.

Everything that can be checked is checked here, before anything is written: every model reference
and train base exists, every mixture source names a known generate entry, registry source or
preset and its local files exist, no train entry depends on itself, every task and data folder is
valid. A trained model needs no weights to be planned: its key derives from its train step's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.errors import InputError
from harness.evaluation.models.loader import resolve_model
from harness.evaluation.tasks import ResolvedTask, resolve_task
from harness.pipeline.preflight import check_api_keys, check_cache_dir, check_output_dir
from harness.pipeline.store import ArtifactStore
from harness.schema import LoadedMatrix, MixtureSpec, ModelSpec, TaskSpec
from harness.steps.base import TRAIN, Step, canonical_hash
from harness.steps.evaluate import Cell, ModelPlan, evaluate_step
from harness.steps.generate import plan_generate
from harness.steps.train import TrainPayload, build_config, recipe_error


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


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


def _where(kind: str, index: int, name: str | None) -> str:
    return f"{kind}[{index}]" + (f" (name: {name})" if name else "")


# --- mixtures -------------------------------------------------------------------------------------

def _fingerprint_path(path: Path) -> str:
    from contentid import directory_fingerprint, file_digest

    return file_digest(path) if path.is_file() else directory_fingerprint(path)


def _mixture_params(mix: MixtureSpec, index: int, loaded: LoadedMatrix, generated: dict[str, Step]) -> tuple[dict[str, Any], list[Step]]:
    """Validate one mixture against the trainer's schema and registry; return (canonical params, input steps)."""
    from trainers.data.registry import REGISTRY, closest, get_preset
    from trainers.data.spec import DataSpec
    from trainers.errors import TrainInputError

    where = _where("mixtures", index, mix.name)
    src_path = loaded.path
    placeholder, inputs, canon_sources = [], [], []
    for j, src in enumerate(mix.sources or []):
        f = f"{where}.sources[{j}]"
        if not isinstance(src, dict) or "kind" not in src:
            raise InputError(src_path, f, "a source needs 'kind:'", "use kind: generated | synthetic | beir | pairs | hub | registry")
        if src["kind"] == "generated":
            extra = set(src) - {"kind", "generate", "name", "instruction", "weight", "max_examples"}
            if extra:
                raise InputError(src_path, f"{f}.{sorted(extra)[0]}", "unknown field for a generated source",
                                 "allowed: generate, name, instruction, weight, max_examples")
            gen = src.get("generate")
            if gen not in generated:
                raise InputError(src_path, f"{f}.generate", f"names no generate entry ({gen!r})",
                                 f"use one of: {', '.join(generated) or '(none: add a generate: entry to the matrix)'}")
            inputs.append(generated[gen])
            placeholder.append({k: v for k, v in src.items() if k != "generate"} | {"kind": "synthetic", "path": "<generated>"})
            canon_sources.append({k: v for k, v in src.items() if k != "generate"} | {"generated": generated[gen].key})
            continue
        if src["kind"] == "registry" and src.get("source") not in REGISTRY:
            raise InputError(src_path, f"{f}.source", f"unknown training source {src.get('source')!r}",
                             closest(str(src.get("source")), list(REGISTRY)))
        if src["kind"] == "registry" and src.get("path") is None:
            _require_local_copy(str(src["source"]), src_path, f"{f}.path", "path: <folder>")
        canon = dict(src)
        for key in ("path", "data_files"):
            value = src.get(key)
            if value is None:
                continue
            prints = []
            for item in ([value] if isinstance(value, str) else list(value)):
                p = loaded.resolve(Path(str(item)))
                if not p.exists():
                    raise InputError(src_path, f"{f}.{key}", f"{p} does not exist", "fix the path (relative to the matrix file)")
                prints.append(f"content:{_fingerprint_path(p)}")
            canon[key] = prints[0] if isinstance(value, str) else prints
        placeholder.append(src)
        canon_sources.append(canon)
    raw = mix.model_dump(exclude={"name"}, exclude_none=True)
    if mix.sources is not None:
        raw["sources"] = placeholder
    try:
        DataSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise InputError(src_path, f"{where}.{loc}" if loc else where, err["msg"],
                         "see docs/training-data.md for the source kinds and their fields") from None
    canon = mix.model_dump(exclude={"name"}, exclude_none=True)
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
    else:
        canon["sources"] = canon_sources
    return canon, inputs


def _require_local_copy(source: str, matrix: Path, field: str, how: str) -> None:
    """Registry sources with no hub copy (the synthetic set, BEIR-layout folders) fail at train time
    without a local path: say so now, before anything runs."""
    from trainers.data.registry import REGISTRY, BeirLoader

    entry = REGISTRY[source]
    if entry.loader is None:
        raise InputError(matrix, field, "the synthetic source needs generated data and none is given",
                         "list the mixture as sources: with {kind: generated, generate: <generate entry>} (or give "
                         "a path to a generator's output)")
    if isinstance(entry.loader, BeirLoader):
        raise InputError(matrix, field, f"{entry.title} has no ready-made hub copy; training reads it from a local folder",
                         f"prepare {entry.loader.how} and add '{how}', or leave the source out")


# --- models ---------------------------------------------------------------------------------------

def _settings(spec: ModelSpec) -> dict[str, Any]:
    return spec.model_dump(exclude={"name", "base_url_env", "api_key_env", "train", "model"})


def _external(spec: ModelSpec, loaded: LoadedMatrix) -> ModelPlan:
    resolved = resolve_model(spec, loaded.base_dir, loaded.path)
    key = canonical_hash({"content": resolved.identity.content, "settings": _settings(spec) | {"model": spec.model},
                          "backend": resolved.decision.to_json()})
    return ModelPlan(spec=spec, key=key, backend=resolved.decision.backend, backend_reason=resolved.decision.reason,
                     resolved=resolved)


def _recipe(spec: ModelSpec, where: str, loaded: LoadedMatrix) -> dict[str, Any]:
    from inputio import read_yaml_mapping

    recipe = spec.train.recipe  # type: ignore[union-attr]
    if recipe is None:
        return {}
    if isinstance(recipe, dict):
        return dict(recipe)
    path = loaded.resolve(recipe)
    if not path.is_file():
        raise InputError(loaded.path, f"{where}.train.recipe", f"recipe file {path} does not exist",
                         "fix the path (relative to the matrix file), or write the recipe inline as a mapping")
    return read_yaml_mapping(path, InputError, "a recipe is a training config without base_model/data (docs/training.md)")


class _ModelPlanner:
    """Plans model entries in dependency order (a trained base first), detecting cycles."""

    def __init__(self, loaded: LoadedMatrix, generated: dict[str, Step], mixtures: dict[str, tuple[dict[str, Any], list[Step]]]) -> None:
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
        from harness.evaluation.models.backend import decide_backend
        from harness.evaluation.models.identity import model_identity
        from harness.evaluation.models.reference import resolve_reference

        t = spec.train
        assert t is not None
        src = self.loaded.path
        if t.mixture not in self.mixtures:
            raise InputError(src, f"{where}.train.mixture", f"names no mixture ({t.mixture!r})",
                             f"use one of: {', '.join(self.mixtures) or '(none: add a mixtures: entry)'}")
        mix_params, mix_inputs = self.mixtures[t.mixture]
        base_step: Step | None = None
        base_ref, gguf, base_commit = t.base, t.gguf_file, None
        if t.revision is not None and t.base in self.specs:
            raise InputError(src, f"{where}.train.revision", f"the base {t.base!r} is an entry of this matrix",
                             f"remove it here; pin the commit with 'revision:' on the entry {t.base!r} itself")
        if t.base in self.specs:
            base_plan = self.plan(t.base)
            if base_plan.train is not None:
                base_step, base_ref, base_backend = base_plan.train, "", base_plan.backend
                base_identity = f"train:{base_plan.train.key}"
            else:
                base_ref, gguf = base_plan.spec.model or "", gguf or base_plan.spec.gguf_file
                base_identity, base_backend = base_plan.resolved.identity.content, base_plan.backend  # type: ignore[union-attr]
                base_commit = base_plan.resolved.identity.hub_commit  # type: ignore[union-attr]
        else:
            field = f"{where}.train.base"
            ref = resolve_reference(t.base, self.loaded.base_dir, src, field=field)
            if ref.kind == "openai":
                raise InputError(src, field, "an API model cannot be fine-tuned here", "name a local path, pkg: or hub model")
            if t.revision is not None and ref.kind != "hub":
                raise InputError(src, f"{where}.train.revision", f"'revision:' pins a hub model's commit, but {t.base!r} is a "
                                 f"{ref.kind} reference", "remove it: a local base is identified by its files")
            ident = model_identity(ref, gguf_file=gguf, revision=t.revision, source=src,
                                   field=f"{where}.train.revision" if t.revision else field)
            # The entry's kind:/pooling: say what the trained model is; offline, where a hub base's own
            # files cannot be read, they are also what decides the base's backend (see decide_backend).
            decision = decide_backend(ref, kind=spec.kind, pooling=spec.pooling, gguf_file=ident.gguf_file,
                                      hub_commit=ident.hub_commit)
            base_ref = ref.value if ref.kind == "path" else t.base
            base_identity, base_backend, base_commit = ident.content, decision.backend, ident.hub_commit
            if decision.guessed:
                self.notes.append(f"model {spec.name}: base {t.base} — {decision.reason}")
        recipe = _recipe(spec, where, self.loaded)
        bad = sorted(set(recipe) & {"base_model", "data", "output", "revision"})
        if bad:
            raise InputError(src, f"{where}.train.recipe.{bad[0]}", "set by the matrix, not the recipe",
                             "remove it: 'base:' and 'mixture:' of the train entry say which model and data")
        payload = TrainPayload(name=spec.name, matrix_path=src, recipe=recipe, base=base_ref, gguf_file=gguf, revision=base_commit,
                               data=self.loaded.matrix.mixtures[self._mix_index(t.mixture)]
                                     .model_dump(exclude={"name"}, exclude_none=True),
                               generated=self.generated, base_step=base_step)
        try:
            cfg = build_config(payload, None, validate_only=True)
        except ValidationError as exc:
            raise recipe_error(src, f"{where}.train.recipe", exc) from None
        recipe_params = cfg.model_dump(mode="json", exclude={"base_model", "gguf_file", "revision", "data", "output", "name",
                                                             "log_every", "device"})
        from harness.steps.train import CODE_VERSION

        inputs = list(dict.fromkeys([*mix_inputs, *([base_step] if base_step else [])]))
        step = Step(kind=TRAIN, label=f"train {spec.name}", code_version=CODE_VERSION, inputs=inputs, payload=payload,
                    gpu=True, params={"recipe": recipe_params, "base": base_identity, "mixture": mix_params})
        # The export of a decoder is an E5-style sentence-transformers directory (last-token pooling),
        # which evaluation routes to the decoder path; an encoder stays an encoder.
        backend = "decoder" if base_backend == "decoder" else "sentence-transformers"
        key = canonical_hash({"content": f"train:{step.key}", "settings": _settings(spec)})
        return ModelPlan(spec=spec, key=key, backend=backend, train=step,
                         backend_reason=f"trained from a {base_backend} base by step {step.key[:12]}")

    def _mix_index(self, name: str) -> int:
        return next(i for i, m in enumerate(self.loaded.matrix.mixtures) if m.name == name)


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

def _as_override(instr: Any) -> dict[str, str]:
    if isinstance(instr, str):
        return {"all": instr}
    return {k: v for k, v in instr.model_dump().items() if v is not None}


def instruction_overrides(tasks: list[ResolvedTask], spec: ModelSpec) -> dict[str, dict[str, str]]:
    """Task-level overrides, then the model entry's own (which win)."""
    out = {rt.name: _as_override(rt.spec.instruction) for rt in tasks if rt.spec.instruction is not None}
    out.update({name: _as_override(instr) for name, instr in spec.task_instructions.items()})
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
        mode = instruction_mode(mp.spec, mp.backend)
        for field_name, task_name, sides in _declared_overrides(mp, tasks):
            rt = by_name[task_name]
            if mode == "none":
                raise InputError(loaded.path, field_name,
                                 f"model {mp.spec.name!r} encodes with instructions: none "
                                 f"({'set in the matrix' if mp.spec.instructions == 'none' else 'the default for ' + mp.backend}), "
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


def _eval_params(mp: ModelPlan, rt: ResolvedTask) -> dict[str, Any]:
    instr = rt.spec.instruction
    return {
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
    generated = {g.name: plan_generate(g.name, loaded.resolve(g.config), loaded.path, f"{_where('generate', i, g.name)}.config")
                 for i, g in enumerate(m.generate)}
    mixtures = {mix.name: _mixture_params(mix, i, loaded, generated) for i, mix in enumerate(m.mixtures)}
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
            evaluate_steps.append(evaluate_step(cell, _eval_params(mp, rt)))
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


def describe(plan: Plan) -> dict[str, Any]:
    """The plan as JSON: each step, cached or to run, with its inputs (``harness plan --json``)."""
    store = ArtifactStore(plan.output)
    return {
        "output": str(plan.output),
        "models": [{"model": mp.spec.name, "backend": mp.backend, "reason": mp.backend_reason, "revision": mp.revision,
                    **({"train_step": mp.train.key} if mp.train else {})} for mp in plan.models],
        "steps": [{"kind": s.kind, "label": s.label, "key": s.key, "inputs": [i.key for i in s.inputs],
                   "status": "cached" if store.is_done(s.kind, s.key) else "to run"} for s in plan.steps],
        "notes": plan.notes,
    }

