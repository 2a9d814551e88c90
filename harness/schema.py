"""The matrix schema: what a user declares in ``matrix.yaml``.

A matrix states intent only: generation configs, named data mixtures, models (pretrained
references, or ``train:`` = base x mixture x recipe), tasks or whole mteb benchmarks with their
subsets, and per-model instruction overrides (several entries on the same weights with different
instructions are the instruction-variant axis). Everything after it is derived by the planner.
This module sits at the bottom of ``harness`` (it imports nothing from it but the error type), so
evaluation, steps and the pipeline can all read the matrix without an upward import. The schema forbids unknown fields so a typo such
as ``subset:`` for ``subsets:`` is an error naming the field and the closest valid name, instead
of a silently ignored setting that costs a day of compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inputio import field_problem, read_yaml_mapping
from harness.errors import InputError

ModelKind = Literal["auto", "sentence-transformers", "decoder", "openai"]
InstructionMode = Literal["auto", "e5", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InstructionOverride(_Strict):
    """Per-prompt-type task strings; either may be omitted to keep mteb's default for it."""

    query: str | None = None
    document: str | None = None


class TrainSpec(_Strict):
    """A model that does not exist yet: ``base`` fine-tuned on a named mixture with a recipe.

    ``base`` is a model reference (as ``model:``) or the name of another entry in ``models:`` (a
    trained model trained further). ``recipe`` is a training config without ``base_model``/``data``
    (a YAML path relative to the matrix file, or an inline mapping of its fields; see
    docs/training.md); omitted, it is the E5 recipe's defaults. The trained model's identity, and so
    its results revision, is the train step's key: known before the model exists.
    """

    base: str = Field(min_length=1)
    mixture: str = Field(min_length=1)
    recipe: Path | dict[str, Any] | None = None
    gguf_file: str | None = None
    revision: str | None = None
    """Hub base only: the branch, tag or commit to train from. Planning resolves it to a commit (a full
    commit hash needs no hub, so a pinned matrix plans offline); the trainer loads exactly that commit."""


class MixtureSpec(_Strict):
    """A named training-data mixture: a trainer preset or a list of sources.

    Sources are the trainer's (``beir``, ``pairs``, ``hub``, ``registry``, ``synthetic``; see
    docs/training-data.md) plus ``{kind: generated, generate: NAME}``, the output of a ``generate:``
    entry of this matrix, which makes the generation step an input of every training on it.
    Paths are relative to the matrix file. Each source is validated by the trainer's own schema.
    """

    name: str = Field(min_length=1)
    preset: str | None = None
    paths: dict[str, str] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    sources: list[dict[str, Any]] | None = None


class ModelSpec(_Strict):
    """One model to evaluate.

    Either ``model`` (an existing model) or ``train`` (one this run trains). ``model`` is a hub id, a local directory (relative to the matrix file), ``pkg:<module>/<subdir>``
    for a directory shipped inside an installed Python package, or ``openai:<model>`` for an
    OpenAI-compatible embeddings endpoint.
    """

    name: str = Field(min_length=1)
    model: str | None = Field(default=None, min_length=1)
    train: TrainSpec | None = None
    kind: ModelKind = "auto"
    instructions: InstructionMode = "auto"
    pooling: Literal["auto", "last-token", "mean", "cls"] = "auto"
    """``auto`` keeps the model's own pooling; ``last-token`` routes to the E5 decoder path."""
    max_length: int | None = Field(default=None, gt=0)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    batch_size: int = Field(default=32, gt=0)
    normalize: bool | None = None
    revision: str | None = None
    """Hub models only: the branch, tag or commit to load. Results revisions stay content-derived."""
    gguf_file: str | None = None
    base_url_env: str = "OPENAI_BASE_URL"
    api_key_env: str = "OPENAI_API_KEY"
    dimensions: int | None = Field(default=None, gt=0)
    task_instructions: dict[str, str | InstructionOverride] = Field(default_factory=dict)
    """Per-task instruction strings for this model entry only (they win over ``tasks[].instruction``).

    Several entries may point at the same weights with different instructions: each is its own
    "model" in the results (its own revision), while the weights are loaded once and documents,
    which carry no instruction in retrieval, are encoded once for all of them."""

    @field_validator("name")
    @classmethod
    def _name_is_path_safe(cls, value: str) -> str:
        if value.startswith((".", "/")) or "\\" in value or ".." in value:
            raise ValueError("must not start with '.' or '/', nor contain '..' or '\\'")
        return value

    @model_validator(mode="after")
    def _model_or_train(self) -> "ModelSpec":
        if (self.model is None) == (self.train is None):
            raise ValueError("give exactly one of 'model:' (an existing model) or 'train:' (base, mixture, recipe)")
        return self


class TaskSpec(_Strict):
    """One mteb task (``name``), or every task of an mteb benchmark (``benchmark``, e.g.
    ``MTEB(eng, v1)`` or ``BEIR``), optionally with a local copy of its data and a subset/split
    selection. ``optional: true`` skips the task, with a note, when its ``data:`` folder is absent
    (a matrix that uses ../shared/data where present and still runs elsewhere)."""

    name: str | None = Field(default=None, min_length=1)
    benchmark: str | None = Field(default=None, min_length=1)
    optional: bool = False
    data: Path | None = None
    subsets: list[str] | None = None
    splits: list[str] | None = None
    instruction: str | InstructionOverride | None = None
    unknown_qrels: Literal["error", "drop"] = "error"
    """Retrieval qrels naming a document (or query) absent from the local files: ``error`` (default),
    or ``drop`` them and report how many. Never silently kept: an unretrievable judgement lowers
    every model's score."""

    @model_validator(mode="after")
    def _name_or_benchmark(self) -> "TaskSpec":
        if (self.name is None) == (self.benchmark is None):
            raise ValueError("give exactly one of 'name:' (an mteb task) or 'benchmark:' (e.g. 'MTEB(eng, v1)', 'BEIR')")
        if self.benchmark is not None and self.data is not None:
            raise ValueError("'data:' is one task's folder; list the benchmark's tasks one by one to give local data")
        return self

    @property
    def label(self) -> str:
        return self.name or f"benchmark {self.benchmark}"


class GenerateSpec(_Strict):
    """A synthetic-data generation step (``generators/``); mixtures consume it as ``kind: generated``.

    ``config`` is a generation config (see ``examples/generate-offline.yaml``), relative to the
    matrix file. The step is keyed by the config's content, so an unchanged config is never run
    twice, and the generator's response store makes a killed step resume call by call.
    """

    name: str = Field(min_length=1)
    config: Path


class Matrix(_Strict):
    """The whole experiment: cells are the product of ``models`` and ``tasks``."""

    name: str = Field(min_length=1)
    output: Path | None = None
    models: list[ModelSpec] = Field(min_length=1)
    tasks: list[TaskSpec] = Field(min_length=1)
    generate: list[GenerateSpec] = Field(default_factory=list)
    mixtures: list[MixtureSpec] = Field(default_factory=list)
    cache_dir: Path | None = None
    llm_cache: Path | None = None
    """Where generate steps keep LLM responses (default ``<run>/cache/llm``): a user-level folder
    shared by several run folders makes a call paid for in one free in all (harness/steps/caches.py)."""

    @field_validator("generate", "mixtures", "models", "tasks")
    @classmethod
    def _unique_names(cls, value: list[Any], info: Any) -> list[Any]:
        """Names are how entries refer to each other (a mixture's generate, a train's base), so each is unique."""
        names = [getattr(v, "name", None) or f"benchmark:{getattr(v, 'benchmark', '')}" for v in value]
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise ValueError(f"duplicate {info.field_name.rstrip('s')} name {n!r}; each must appear once")
            seen.add(n)
        return value


class LoadedMatrix(BaseModel):
    """A validated matrix together with where it came from (relative paths resolve against it)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    matrix: Matrix
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def output_dir(self, override: Path | None = None) -> Path:
        if override is not None:
            return override.expanduser().resolve()
        if self.matrix.output is not None:
            return self.resolve(self.matrix.output)
        return (Path.cwd() / "runs" / self.matrix.name).resolve()


def _field_path(loc: tuple[Any, ...], raw: Any) -> str:
    """Turn a pydantic location into ``models[0].name``, adding the model/task name if known."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            label = f"[{item}]"
            if isinstance(node, list) and 0 <= item < len(node) and isinstance(node[item], dict):
                nm = node[item].get("name")
                if nm:
                    label = f"[{item}] (name: {nm})"
            parts.append(label)
            node = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
        else:
            parts.append(("." if parts else "") + str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return "".join(parts)


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Matrix
    for item in loc[:-1]:
        if isinstance(item, int):
            continue
        field = model.model_fields.get(str(item))
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        inner = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def load_matrix(path: str | Path) -> LoadedMatrix:
    """Read and validate a matrix file; any problem raises one :class:`InputError`."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise InputError(path, None, "matrix file does not exist", "pass the path of an existing YAML matrix file")
    raw = read_yaml_mapping(path, InputError, "start the file with 'name:', 'models:' and 'tasks:'")
    try:
        matrix = Matrix.model_validate(raw)
    except ValidationError as exc:
        fp = field_problem(exc, allowed=_allowed_fields, docs="README 'Matrix reference'")
        raise InputError(path, _field_path(fp.loc, raw) or "<top level>", fp.problem, fp.fix) from None
    return LoadedMatrix(matrix=matrix, path=path)
