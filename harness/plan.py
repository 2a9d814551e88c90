"""The planner: matrix -> cells -> steps with content keys, and what is already cached.

Keys hash everything that changes a step's output (model identity and encode settings, task,
subsets, splits, instruction overrides, the data's content hash, mteb's version), so a changed
setting re-runs only what depends on it and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.config import GenerateSpec, LoadedMatrix, ModelSpec
from harness.errors import InputError
from harness.models.loader import ResolvedModel, resolve_model
from harness.models.reference import ModelReference
from harness.preflight import check_api_keys, check_cache_dir, check_output_dir
from harness.store import ArtifactStore
from harness.tasks import ResolvedTask, resolve_task

EVAL_STEP = "evaluate"
GENERATE_STEP = "generate"
EVAL_CODE_VERSION = "1"  # bump when evaluation code changes what a result means


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class ModelPlan:
    spec: ModelSpec
    resolved: ResolvedModel
    key: str

    @property
    def ref(self) -> ModelReference:
        return self.resolved.ref

    @property
    def revision(self) -> str:
        """Content-derived: changes whenever weights or encode settings change, so results never collide.

        ``revision:`` in the matrix pins which hub commit is loaded; the resolved commit is part of
        the key, so it is reflected here too, but it is never used as the results revision itself.
        """
        return self.key[:12]


@dataclass
class Cell:
    model: ModelPlan
    task: ResolvedTask
    key: str

    @property
    def label(self) -> str:
        return f"{self.model.spec.name} × {self.task.name}"


@dataclass
class GenerateStep:
    spec: GenerateSpec
    config_path: Path
    key: str


@dataclass
class Plan:
    loaded: LoadedMatrix
    output: Path
    models: list[ModelPlan]
    tasks: list[ResolvedTask]
    cells: list[Cell]
    generate: list[GenerateStep] = field(default_factory=list)

    def generate_cached(self, step: GenerateStep) -> bool:
        return ArtifactStore(self.output).is_done(GENERATE_STEP, step.key)

    def cached(self, cell: Cell) -> bool:
        return ArtifactStore(self.output).is_done(EVAL_STEP, cell.key)


def model_plan(spec: ModelSpec, loaded: LoadedMatrix) -> ModelPlan:
    resolved = resolve_model(spec, loaded.base_dir, loaded.path)
    settings = spec.model_dump(exclude={"name", "base_url_env", "api_key_env"})
    key = _hash({"content": resolved.identity.content, "settings": settings, "backend": resolved.decision.to_json()})
    return ModelPlan(spec=spec, resolved=resolved, key=key)


def generate_step(spec: GenerateSpec, loaded: LoadedMatrix, index: int) -> GenerateStep:
    """Validate the generation config now (bad input fails before anything runs) and key it."""
    from generators.config import load_config
    from generators.errors import GeneratorInputError

    path = loaded.resolve(spec.config)
    field_name = f"generate[{index}] (name: {spec.name}).config"
    if not path.is_file():
        raise InputError(loaded.path, field_name, f"generation config {path} does not exist",
                         "fix the path (relative to the matrix file)")
    try:
        load_config(path)
    except GeneratorInputError as exc:
        raise InputError(loaded.path, field_name, f"invalid generation config ({exc})", "fix the generation config") from None
    key = _hash({"config": hashlib.sha256(path.read_bytes()).hexdigest(), "generators": _version("e5-harness")})
    return GenerateStep(spec=spec, config_path=path, key=key)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


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
    from harness.instructions import is_retrieval_like
    from harness.models.loader import instruction_mode

    by_name = {rt.name: rt for rt in tasks}
    for mp in models:
        unknown = sorted(set(mp.spec.task_instructions) - set(by_name))
        if unknown:
            raise InputError(loaded.path, f"models[{mp.spec.name}].task_instructions.{unknown[0]}",
                             "names a task that is not in this matrix", f"use one of: {', '.join(sorted(by_name))}")
        mode = instruction_mode(mp.spec, mp.resolved.decision.backend)
        for field_name, task_name, sides in _declared_overrides(mp, tasks):
            rt = by_name[task_name]
            if mode == "none":
                raise InputError(loaded.path, field_name,
                                 f"model {mp.spec.name!r} encodes with instructions: none "
                                 f"({'set in the matrix' if mp.spec.instructions == 'none' else 'the default for ' + mp.resolved.decision.backend}), "
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
    """Resolve every model and task up front so bad input fails before anything is written.

    With ``load_data`` every local data file is parsed now: a malformed qrels line must be
    reported before the first cell writes a result, not an hour into the run.
    """
    m = loaded.matrix
    out_dir = loaded.output_dir(output)
    check_output_dir(out_dir, "--output" if output is not None else "output", None if output is not None else loaded.path)
    check_cache_dir(loaded)
    check_api_keys(loaded)
    models = [model_plan(spec, loaded) for spec in m.models]
    tasks = [resolve_task(spec, loaded, i) for i, spec in enumerate(m.tasks)]
    if load_data:
        for rt in tasks:
            rt.load()
    check_instruction_overrides(loaded, models, tasks)
    cells: list[Cell] = []
    for mp in models:
        for rt in tasks:
            instr = rt.spec.instruction
            key = _hash({
                "model": mp.key,
                "name": mp.spec.name,  # results are filed under it: a renamed entry must write them anew
                "task": rt.name,
                "subsets": rt.subsets,
                "splits": rt.splits,
                "instruction": instr if isinstance(instr, (str, type(None))) else instr.model_dump(),
                "data": rt.data_fingerprint(),
                **({"unknown_qrels": "drop"} if rt.spec.unknown_qrels == "drop" else {}),
                "mteb": _version("mteb"),
                "code": EVAL_CODE_VERSION,
            })
            cells.append(Cell(model=mp, task=rt, key=key))
    gens = [generate_step(g, loaded, i) for i, g in enumerate(m.generate)]
    return Plan(loaded=loaded, output=out_dir, models=models, tasks=tasks, cells=cells, generate=gens)
