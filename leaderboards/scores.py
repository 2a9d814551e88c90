"""In-memory shape of one model's scores, whatever they were read from.

Run folders, other results folders and the shipped reference data all become ``ModelResults``, so
aggregation and gating never need to know where a number came from; where it came from is kept
beside it (``origin``, ``location``, per-task ``sources``) so every rendered number stays traceable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Origin = Literal["run", "reference", "directory"]


@dataclass(frozen=True, order=True)
class ScoreKey:
    """One comparable number: MTEB reports a main score per (task, split, hf_subset)."""

    task: str
    split: str
    subset: str

    @property
    def label(self) -> str:
        return f"{self.task}/{self.split}/{self.subset}"


@dataclass(frozen=True)
class TaskSource:
    """Where a task's numbers came from, for provenance columns and PR comments."""

    source_path: str
    mteb_version: str | None = None
    dataset_revision: str | None = None


@dataclass
class ModelResults:
    """All main scores of one model revision, plus how to find per-query scores for a paired test."""

    name: str
    revision: str
    origin: Origin
    location: str
    scores: dict[ScoreKey, float] = field(default_factory=dict)
    task_types: dict[str, str] = field(default_factory=dict)
    languages: dict[ScoreKey, tuple[str, ...]] = field(default_factory=dict)
    sources: dict[str, TaskSource] = field(default_factory=dict)
    per_query_files: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # Scores mteb produced as NaN/inf (written as null in strict JSON): a broken evaluation, which a
    # gate must report as such rather than as a score that was never computed.
    nan_scores: set[ScoreKey] = field(default_factory=set)
    # task -> "<harness step key>@<evaluation date>": the same value on both sides of a gate means the
    # very same evaluation (a copied folder), not a re-run that happens to share a step key.
    step_keys: dict[str, str] = field(default_factory=dict)
    # From the harness provenance of a run's results: the model reference evaluated, its content
    # identity (what a train step names as its base), and for a model the run trained, its train
    # step's key and the matrix entry (or reference) it was trained from.
    reference: str | None = None
    content: str | None = None
    train_step: str | None = None
    trained_from: str | None = None

    @property
    def tasks(self) -> set[str]:
        return {k.task for k in self.scores}

    def keys_for(self, task: str) -> set[ScoreKey]:
        return {k for k in self.scores if k.task == task}
