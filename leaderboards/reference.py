"""The shipped MTEB reference scores, and how users name the models in them.

The numbers are a derived copy of the public embeddings-benchmark/results repository (one
preferred main score per model, task, split and subset, each with the result file and commit it
came from), so a report or gate works offline and is reproducible; ``build_reference`` rebuilds the
file. Users may name models in full, by a unique suffix, or by a group alias such as ``mE5``.
"""

from __future__ import annotations

import difflib
import gzip
import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from inputio import field_problem
from leaderboards.errors import LeaderboardInputError
from leaderboards.schemas import REFERENCE_FORMAT, ReferenceHeader, ReferenceRecord
from leaderboards.scores import ModelResults, ScoreKey, TaskSource

REFERENCE_FILENAME = "reference_scores.jsonl.gz"

# Group names used in the issue and in conversation; each expands to full model names.
ALIASES: dict[str, tuple[str, ...]] = {
    "me5": (
        "intfloat/multilingual-e5-small",
        "intfloat/multilingual-e5-base",
        "intfloat/multilingual-e5-large",
    ),
    "e5-mistral": ("intfloat/e5-mistral-7b-instruct",),
    "openai": (
        "openai/text-embedding-ada-002",
        "openai/text-embedding-3-small",
        "openai/text-embedding-3-large",
    ),
    "cohere": ("Cohere/Cohere-embed-english-v3.0", "Cohere/Cohere-embed-multilingual-v3.0"),
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2",),
    "bge-small": ("BAAI/bge-small-en-v1.5",),
}


@dataclass(frozen=True)
class ReferenceData:
    header: ReferenceHeader
    models: dict[str, ModelResults]
    path: Path

    @property
    def provenance(self) -> str:
        commit = self.header.source_commit or "unknown commit"
        return f"{self.header.source_repository}@{commit}"


def packaged_reference_path() -> Path:
    return Path(str(resources.files("leaderboards.reference_data").joinpath(REFERENCE_FILENAME)))


def _fail(path: Path, line: int, problem: str) -> LeaderboardInputError:
    return LeaderboardInputError(
        path, f"line {line}", problem,
        "rebuild it with `python -m leaderboards.build_reference` (see docs/leaderboards.md)",
    )


def load_reference_file(path: Path) -> ReferenceData:
    """Parse a reference file in our format (header line, then one record per source result file)."""
    path = Path(path)
    if not path.is_file():
        raise LeaderboardInputError(path, None, "reference data file is missing", "reinstall the package or rebuild it with `python -m leaderboards.build_reference`")
    models: dict[str, ModelResults] = {}
    header: ReferenceHeader | None = None
    revision_counts: dict[str, Counter[str]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fail(path, lineno, f"is not valid JSON ({exc.msg})") from exc
            try:
                if header is None:
                    header = ReferenceHeader.model_validate(raw)
                    if header.format != REFERENCE_FORMAT:
                        raise _fail(path, 1, f"format {header.format!r} is not {REFERENCE_FORMAT!r}")
                    continue
                record = ReferenceRecord.model_validate(raw)
            except ValidationError as exc:
                fp = field_problem(exc)
                raise _fail(path, lineno, f"{fp.field or '<top level>'}: {fp.problem}") from exc
            _add_record(models, record, path)
            revision_counts.setdefault(record.model, Counter())[record.revision] += len(record.scores)
    if header is None:
        raise _fail(path, 1, "is empty")
    for name, counts in revision_counts.items():
        # Preferred rows can come from several revision folders (API versions, "external"); name the
        # main one and say that there are others: per-task provenance is in ``sources``.
        (main, _), *others = counts.most_common()
        models[name].revision = main + (f" (+{len(others)} more)" if others else "")
    return ReferenceData(header=header, models=models, path=path)


def _add_record(models: dict[str, ModelResults], record: ReferenceRecord, path: Path) -> None:
    model = models.get(record.model)
    if model is None:
        model = models[record.model] = ModelResults(
            name=record.model, revision=record.revision, origin="reference", location=str(path)
        )
    for split, subset, score in record.scores:
        model.scores[ScoreKey(record.task, split, subset)] = score
    model.task_types[record.task] = record.task_type
    previous = model.sources.get(record.task)
    source_path = record.source_path if previous is None else f"{previous.source_path}; {record.source_path}"
    model.sources[record.task] = TaskSource(source_path, record.mteb_version, record.dataset_revision)


@lru_cache(maxsize=4)
def _cached(path: str) -> ReferenceData:
    return load_reference_file(Path(path))


def load_reference(path: Path | None = None) -> ReferenceData:
    """The packaged reference data (cached), or another file in the same format."""
    return _cached(str(path or packaged_reference_path()))


def resolve_names(names: list[str], data: ReferenceData) -> list[str]:
    """Expand aliases and unique suffixes to full model names, in the order given, without repeats."""
    available = sorted(data.models)
    resolved: list[str] = []
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            for full in _resolve_one(name, available):
                if full not in resolved:
                    resolved.append(full)
    return resolved


def _resolve_one(name: str, available: list[str]) -> tuple[str, ...]:
    lowered = name.lower()
    if lowered == "all":
        return tuple(available)
    if lowered == "none":
        return ()
    if name in available:
        return (name,)
    if lowered in ALIASES:
        return tuple(n for n in ALIASES[lowered] if n in available)
    exact = [n for n in available if n.lower() == lowered]
    suffix = [n for n in available if n.lower().endswith("/" + lowered)]
    if len(exact) == 1:
        return (exact[0],)
    if len(suffix) == 1:
        return (suffix[0],)
    raise unknown_model_error(name, available)


def unknown_model_error(name: str, available: list[str]) -> LeaderboardInputError:
    close = difflib.get_close_matches(name, available + sorted(ALIASES), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return LeaderboardInputError(
        None, "baseline", f"{name!r} is neither a results directory nor a shipped reference model",
        f"{hint}use one of: {', '.join(available)}; or an alias: {', '.join(sorted(ALIASES))}, all",
    )
