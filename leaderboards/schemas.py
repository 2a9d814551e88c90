"""Pydantic schemas of every file the leaderboards read.

Validation errors from these models carry the exact field path (e.g. ``scores.test.0.main_score``),
which is what turns "KeyError: 'main_score'" into a message a user can act on. Extra keys are
allowed everywhere because mteb adds top-level keys between versions and we only need a few.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inputio import field_problem
from leaderboards.errors import LeaderboardInputError

REFERENCE_FORMAT = "e5-harness-reference/1"


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class SubsetScore(_Tolerant):
    """One entry of ``scores.<split>`` in an mteb v2 TaskResult file."""

    hf_subset: str
    languages: list[str] = Field(default_factory=list)
    main_score: float | None  # None: mteb's NaN, written as null in strict JSON


class TaskResultFile(_Tolerant):
    """The parts of mteb's ``TaskResult`` JSON (results-repository layout) that aggregation needs."""

    task_name: str
    dataset_revision: str | None = None
    mteb_version: str | None = None
    evaluation_time: float | None = None
    scores: dict[str, list[SubsetScore]]
    harness_provenance: dict[str, Any] | None = None
    date: float | None = None  # when mteb evaluated it (epoch seconds)

    def stored_task_type(self) -> str | None:
        """The task type the writer recorded (the harness does, for local tasks mteb does not know)."""
        task = (self.harness_provenance or {}).get("task")
        value = task.get("type") if isinstance(task, dict) else None
        return value if isinstance(value, str) else None


class ModelMetaFile(_Tolerant):
    """``model_meta.json`` beside the task files; only the identity matters here."""

    name: str | None = None
    revision: str | None = None


class PerQueryFile(_Tolerant):
    """``per_query/<Task>.json``: the main metric of every query, for paired significance tests."""

    task_name: str
    main_score: str
    scores: dict[str, dict[str, dict[str, float]]]


class ReferenceHeader(_Tolerant):
    """First line of the shipped reference file: what it is and where its numbers come from."""

    format: str
    source_repository: str
    source_commit: str | None
    built_from: str
    built_from_sha256: str | None = None
    selection: str
    score_scale: str = "0-1"
    records: int
    scores: int


class ReferenceRecord(_Tolerant):
    """One source result file of one model: its provenance once, then its (split, subset, score) rows."""

    model: str
    revision: str
    task: str
    task_type: str
    metric: str | None = None
    mteb_version: str | None = None
    dataset_revision: str | None = None
    source_path: str
    scores: list[tuple[str, str, float]]


M = TypeVar("M", bound=BaseModel)


def parse_file(model: type[M], raw: Any, path: Path, fix: str, what: str | None = None) -> M:
    """Validate one file's JSON against its schema; any problem becomes one LeaderboardInputError."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fp = field_problem(exc)
        raise LeaderboardInputError(path, fp.field or "<top level>", f"is not {what} ({fp.problem})" if what else fp.problem,
                                    fix) from exc
