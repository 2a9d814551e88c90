"""The one step type and the protocol every step kind implements.

A step is (kind, params, input steps): its key hashes its kind, its kind's code version, its
canonical params and its inputs' keys. So one synthetic set feeds every model trained on it (same
generate key), a trained model's identity is its train step's key (known at plan time, long before
the weights exist), and a changed setting changes exactly the keys of the steps that depend on it.

Each kind lives in one module of :mod:`harness.steps` and owns everything about itself (see
:class:`harness.steps.kind.StepKind`): which params it hashes (what determines its output and nothing else: never a
path, a transport setting, a device or a secret), how it runs (on the validated spec its key was
computed from, never on a file re-read at run time), what it will cost (:class:`Estimate`), and
which run-level caches it reads and writes (:class:`CacheUse`). The planner, the executors and
``harness plan`` know only this protocol, so a new kind is one new module (docs/pipeline.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

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
