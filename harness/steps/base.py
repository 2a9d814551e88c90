"""The one step type and the protocol every step kind implements.

A step is (kind, params, input steps): its key hashes its kind, its kind's code version, its
canonical params and its inputs' keys. So one synthetic set feeds every model trained on it (same
generate key), a trained model's identity is its train step's key (known at plan time, long before
the weights exist), and a changed setting changes exactly the keys of the steps that depend on it.

Each kind lives in one module of :mod:`harness.steps` and owns everything about itself (see
:class:`StepKind`): which params it hashes (what determines its output and nothing else: never a
path, a transport setting, a device or a secret), how it runs (on the validated spec its key was
computed from, never on a file re-read at run time), what it will cost (:class:`Estimate`), and
which run-level caches it reads and writes (:class:`CacheUse`). The planner, the executors and
``harness plan`` know only this protocol, so a new kind is one new module (docs/pipeline.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from harness.steps.context import RunContext

GENERATE, TRAIN, EVALUATE = "generate", "train", "evaluate"


def canonical_hash(obj: Any) -> str:
    """sha256 of canonical JSON (sorted keys; ``str`` for paths): the hash every key is made of."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()).hexdigest()


SpecT = TypeVar("SpecT")


@dataclass(eq=False)
class Step(Generic[SpecT]):
    """One node of the DAG. ``params`` is exactly what the key hashes; ``spec`` is what ``run`` gets.

    ``spec`` is the kind's own typed, validated object (``GenerateSpec``, ``TrainSpec``, an
    evaluation ``Cell``): built once at plan time from the same input as ``params``, so what runs
    is what was keyed.
    """

    kind: str
    label: str  # what the user reads: "train smollm2-synthetic", "evaluate minilm × SciFact"
    params: dict[str, Any]
    inputs: list["Step[Any]"]
    code_version: str
    spec: SpecT = field(default=None, repr=False)  # type: ignore[assignment]
    gpu: bool = False  # wants an accelerator (one per GPU step on a cluster)
    group: str | None = None  # steps of one group run in one unit (evaluation: one loaded model)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = canonical_hash({"kind": self.kind, "code": self.code_version, "params": self.params,
                                   "inputs": sorted(s.key for s in self.inputs)})

    @property
    def input_keys(self) -> dict[str, str]:
        return {s.label: s.key for s in self.inputs}


@dataclass
class Estimate:
    """What a step still to run will cost, as ``harness plan`` shows it.

    ``llm_calls_cached`` are answered by the run's LLM response cache (free); ``llm_calls`` are the
    ones to pay. ``usd`` is an upper bound (output at ``max_tokens``); None means unpriced or unknown.
    ``gpu_hours`` None means unknown (the summary says why).
    """

    summary: str
    llm_calls: int = 0
    llm_calls_cached: int = 0
    local_llm: bool = False
    local_llm_hours: float | None = 0.0
    usd: float | None = 0.0
    unpriced_models: list[str] = field(default_factory=list)
    gpu_hours: float | None = 0.0
    assumptions: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific numbers, shown by --json

    @property
    def unknown(self) -> bool:
        return self.gpu_hours is None or (self.local_llm and self.local_llm_hours is None)

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "llm_calls": self.llm_calls, "llm_calls_cached": self.llm_calls_cached,
                "local_llm": self.local_llm, "local_llm_hours": self.local_llm_hours, "usd": self.usd,
                "unpriced_models": self.unpriced_models, "gpu_hours": self.gpu_hours, "assumptions": self.assumptions,
                **self.details}


@dataclass(frozen=True)
class CacheUse:
    """A run-level cache a step reads or writes: shown by ``harness plan --json`` and docs/pipeline.md."""

    name: str  # "llm-responses" | "dense-gguf" | "embeddings"
    path: Path
    mode: str  # "read-write" | "read"


StepRunner = Callable[[Step, Path], dict[str, Any]]


class StepKind(Protocol):
    """What a kind module provides (one instance per kind, registered in :mod:`harness.steps`).

    - ``name``, ``code_version`` (bump when the kind's code changes what an output means);
    - ``resumes``: a killed step resumes from its work directory (generation, training); a kind
      that cannot (evaluation: its vectors are in the embedding cache) starts each try afresh;
    - ``session(steps, ctx)``: a context that loads what a unit's steps share (one model for the
      evaluate steps of one model entry) and yields the function that runs one step in its work
      directory and returns its summary;
    - ``after_commit(step, step_dir, ctx)``: what follows a finished step (evaluation publishes its
      result files into ``results/``); also called for a step found done, so it is idempotent;
    - ``estimate(step, ctx)``: the cost of running it (:class:`Estimate`);
    - ``progress(step, work)``: what a killed try left that the next one resumes from (None: nothing);
    - ``caches(step, ctx)``: the run-level caches it reads and writes.
    """

    name: str
    code_version: str
    resumes: bool

    def session(self, steps: list[Step], ctx: "RunContext") -> AbstractContextManager[StepRunner]: ...

    def after_commit(self, step: Step, step_dir: Path, ctx: "RunContext") -> None: ...

    def estimate(self, step: Step, ctx: "RunContext") -> Estimate: ...

    def progress(self, step: Step, work: Path) -> str | None: ...

    def caches(self, step: Step, ctx: "RunContext") -> list[CacheUse]: ...


def single_step_session(run: Callable[[Step, Path], dict[str, Any]]) -> AbstractContextManager[StepRunner]:
    """The session of a kind whose steps share nothing: it just runs each step."""
    from contextlib import contextmanager

    @contextmanager
    def session() -> Iterator[StepRunner]:
        yield run

    return session()
