"""Read a results folder in the MTEB results-repository layout into ``ModelResults``.

Layout: ``<run_dir>/results/<org>__<model>/<revision>/<TaskName>.json`` (+ ``model_meta.json`` and
``per_query/<TaskName>.json``). Either the run directory or the ``results/`` folder itself may be
given. Files are parsed with mteb's own ``TaskResult`` loader, which also understands older result
formats; our pydantic schema is the fallback and is what explains a file mteb cannot read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


from leaderboards.errors import LeaderboardInputError
from leaderboards.schemas import ModelMetaFile, SubsetScore, TaskResultFile, parse_file
from leaderboards.scores import ModelResults, Origin, ScoreKey, TaskSource
from leaderboards.task_metadata import task_type

_LAYOUT_FIX = (
    "pass a run directory holding results/<org>__<model>/<revision>/<TaskName>.json "
    "(or that results/ folder itself); check that the evaluation step finished"
)
_NOT_TASK_FILES = {"model_meta.json"}


def find_results_root(path: Path) -> Path:
    """The folder whose children are model folders: ``path/results`` if present, else ``path``."""
    path = Path(path)
    if not path.exists():
        raise LeaderboardInputError(path, None, "does not exist", _LAYOUT_FIX)
    if not path.is_dir():
        raise LeaderboardInputError(path, None, "is a file, not a results directory", _LAYOUT_FIX)
    nested = path / "results"
    return nested if nested.is_dir() else path


def read_json(path: Path) -> Any:
    """Parse JSON, reporting the line and column of a syntax error (a truncated write, usually)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LeaderboardInputError(
            path, f"byte {exc.start}", "is not UTF-8 text", "re-run the step that wrote it, or delete it"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LeaderboardInputError(
            path,
            f"line {exc.lineno}, column {exc.colno}",
            f"is not valid JSON ({exc.msg})",
            "re-run the evaluation of this task (the file was probably cut short) or delete the file",
        ) from exc


def read_task_result(path: Path) -> TaskResultFile:
    """One ``<TaskName>.json``, through mteb's loader when it can read it."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise LeaderboardInputError(
            path, "<top level>", f"is a JSON {type(raw).__name__}, not an mteb TaskResult object",
            "point at MTEB result files (objects with task_name and scores)",
        )
    try:
        from mteb.results import TaskResult

        loaded = TaskResult.from_disk(path)
        return TaskResultFile.model_validate(
            {
                "task_name": loaded.task_name,
                "dataset_revision": loaded.dataset_revision,
                "mteb_version": raw.get("mteb_version") or loaded.mteb_version,  # the writer's, not ours
                "evaluation_time": loaded.evaluation_time,
                "scores": loaded.scores,
                "harness_provenance": raw.get("harness_provenance"),
                "date": raw.get("date"),
            }
        )
    except Exception:  # mteb could not read it: our schema either reads it or says what is wrong
        pass
    return parse_file(TaskResultFile, raw, path, "re-run the evaluation of this task with mteb>=2, or delete the file",
                      what="an mteb TaskResult")


def _read_model_meta(path: Path) -> ModelMetaFile:
    if not path.is_file():
        return ModelMetaFile()
    return parse_file(ModelMetaFile, read_json(path), path, "rewrite model_meta.json with name and revision")


def _add_task(results: ModelResults, path: Path, parsed: TaskResultFile, rel: str) -> None:
    task = parsed.task_name
    if path.stem != task:
        raise LeaderboardInputError(
            path, "task_name", f"says {task!r} but the file is named {path.name!r}",
            f"rename the file to {task}.json or fix task_name",
        )
    for split, entries in parsed.scores.items():
        for entry in entries:
            key = ScoreKey(task, split, entry.hf_subset)
            if not _finite(entry):
                results.skipped.append(f"{key.label}: main_score is NaN in {path}")
                results.nan_scores.add(key)
                continue
            results.scores[key] = float(entry.main_score)
            results.languages[key] = tuple(entry.languages)
    results.task_types[task] = task_type(task, parsed.stored_task_type())
    step_key = (parsed.harness_provenance or {}).get("step_key")
    if isinstance(step_key, str):
        results.step_keys[task] = f"{step_key}@{parsed.date}"
    model = (parsed.harness_provenance or {}).get("model")
    if isinstance(model, dict):
        for name in ("reference", "content", "train_step", "trained_from"):
            value = model.get(name)
            if isinstance(value, str) and value:
                setattr(results, name, value)
    results.sources[task] = TaskSource(rel, parsed.mteb_version, parsed.dataset_revision)


def _finite(entry: SubsetScore) -> bool:
    return entry.main_score is not None and math.isfinite(entry.main_score)


def read_model_folder(revision_dir: Path, origin: Origin, root: Path) -> ModelResults:
    """One ``<model>/<revision>/`` folder; identity from model_meta.json, else from folder names."""
    meta = _read_model_meta(revision_dir / "model_meta.json")
    name = meta.name or revision_dir.parent.name.replace("__", "/")
    revision = meta.revision or revision_dir.name
    results = ModelResults(name=name, revision=str(revision), origin=origin, location=str(revision_dir))
    for path in sorted(revision_dir.glob("*.json")):
        if path.name in _NOT_TASK_FILES:
            continue
        rel = path.relative_to(root.parent).as_posix()
        _add_task(results, path, read_task_result(path), rel)
    per_query = revision_dir / "per_query"
    if per_query.is_dir():
        results.per_query_files = {p.stem: p for p in sorted(per_query.glob("*.json"))}
    return results


def read_results_dir(path: Path, origin: Origin = "run") -> list[ModelResults]:
    """Every model revision under a results folder; an error if there is nothing to read."""
    root = find_results_root(path)
    models = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for revision_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if not any(p.name not in _NOT_TASK_FILES for p in revision_dir.glob("*.json")):
                continue
            models.append(read_model_folder(revision_dir, origin, root))
    models = [m for m in models if m.scores or m.skipped]
    if not models:
        raise LeaderboardInputError(path, None, "holds no MTEB result files", _LAYOUT_FIX)
    return models
