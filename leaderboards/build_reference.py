"""Rebuild the shipped reference file from public MTEB results.

    python -m leaderboards.build_reference --csv ../shared/data/reference_scores/mteb_reference_scores_all_tasks.csv.gz
    python -m leaderboards.build_reference --results path/to/results-repo --commit <sha> --models intfloat/multilingual-e5-large

The project never commits the extracted CSVs; it ships this derived file instead: only the main
score of the one preferred result per (model, task, split, subset), grouped by the result file it
came from so that provenance (file, revision, mteb version, commit) is stored once per file. The
output is byte-for-byte reproducible (sorted records, gzip mtime 0), so a rebuild diff is a data diff.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import math
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable, NamedTuple

from atomicio import atomic_write_bytes
from leaderboards.errors import LeaderboardInputError
from leaderboards.reference import packaged_reference_path
from leaderboards.results_reader import read_results_dir
from leaderboards.schemas import REFERENCE_FORMAT, ReferenceHeader, ReferenceRecord

RESULTS_REPOSITORY = "embeddings-benchmark/results"
# The snapshot ../shared/data/reference_scores/ was extracted from (its SOURCE.md).
RESULTS_COMMIT = "f4cc6c8b365a3c779dbc708d6affe0b0355b2ddf"

ISSUE_MODELS: tuple[str, ...] = (
    "sentence-transformers/all-MiniLM-L6-v2",
    "BAAI/bge-small-en-v1.5",
    "intfloat/multilingual-e5-small",
    "intfloat/multilingual-e5-base",
    "intfloat/multilingual-e5-large",
    "intfloat/e5-mistral-7b-instruct",
    "openai/text-embedding-ada-002",
    "openai/text-embedding-3-small",
    "openai/text-embedding-3-large",
    "Cohere/Cohere-embed-english-v3.0",
    "Cohere/Cohere-embed-multilingual-v3.0",
)

_CSV_COLUMNS = {"model", "task", "task_type", "split", "subset", "score", "source_path", "revision", "mteb_version"}


class Row(NamedTuple):
    model: str
    task: str
    task_type: str
    split: str
    subset: str
    score: float
    metric: str | None
    source_path: str
    revision: str
    mteb_version: str | None
    dataset_revision: str | None


def preference(revision: str, mteb_version: str | None) -> tuple[int, tuple[int, ...], str]:
    """Order candidates for one (model, task, split, subset) as SOURCE.md does: a real revision beats
    numbers imported from papers ("external"), which beat unknown revisions; then newest mteb wins."""
    if revision == "no_revision_available":
        klass = 0
    elif revision == "external":
        klass = 1
    else:
        klass = 2
    return klass, _version_tuple(mteb_version), revision


def _version_tuple(version: str | None) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", version or "")
    return tuple(int(p) for p in match.group(0).split(".")) if match else ()


def pick_preferred(rows: Iterable[Row]) -> list[Row]:
    best: dict[tuple[str, str, str, str], Row] = {}
    for row in rows:
        key = (row.model, row.task, row.split, row.subset)
        old = best.get(key)
        if old is None or preference(row.revision, row.mteb_version) > preference(old.revision, old.mteb_version):
            best[key] = row
    return list(best.values())


def rows_from_csv(path: Path, models: set[str] | None) -> list[Row]:
    """Rows of the extracted CSV (plain or .gz); ``preferred`` is honoured, NaN scores are dropped."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = _CSV_COLUMNS - set(reader.fieldnames or ())
            if missing:
                raise LeaderboardInputError(path, "header", f"lacks column(s) {', '.join(sorted(missing))}",
                                            "pass mteb_reference_scores*.csv from ../shared/data/reference_scores/")
            rows = []
            for lineno, rec in enumerate(reader, start=2):
                if models is not None and rec["model"] not in models:
                    continue
                if rec.get("preferred", "1") not in ("1", "1.0", "True", "true"):
                    continue
                try:
                    score = float(rec["score"])
                except ValueError as exc:
                    raise LeaderboardInputError(path, f"line {lineno}, column score", f"{rec['score']!r} is not a number",
                                                "fix the row or re-extract the CSV") from exc
                if not math.isfinite(score):
                    continue
                rows.append(Row(rec["model"], rec["task"], rec["task_type"], rec["split"], rec["subset"], score,
                                rec.get("metric") or None, rec["source_path"], rec["revision"],
                                rec.get("mteb_version") or None, rec.get("dataset_revision") or None))
    except (OSError, EOFError) as exc:
        raise LeaderboardInputError(path, None, f"cannot be read ({exc})", "pass a readable CSV or CSV.gz file") from exc
    return pick_preferred(rows)


def rows_from_results(path: Path, models: set[str] | None) -> list[Row]:
    """Rows of every model revision in an MTEB-layout results folder, then the preferred one per key."""
    rows = []
    for model in read_results_dir(path, origin="directory"):
        if models is not None and model.name not in models:
            continue
        for key, score in model.scores.items():
            source = model.sources[key.task]
            rows.append(Row(model.name, key.task, model.task_types.get(key.task, "Unknown"), key.split, key.subset,
                            score, None, source.source_path, model.revision, source.mteb_version, source.dataset_revision))
    return pick_preferred(rows)


def to_records(rows: list[Row]) -> list[ReferenceRecord]:
    grouped: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        grouped[(row.model, row.task, row.source_path, row.revision)].append(row)
    records = []
    for (model, task, source_path, revision), group in sorted(grouped.items()):
        first = group[0]
        records.append(ReferenceRecord(
            model=model, revision=revision, task=task, task_type=first.task_type, metric=first.metric,
            mteb_version=first.mteb_version, dataset_revision=first.dataset_revision, source_path=source_path,
            scores=sorted((r.split, r.subset, r.score) for r in group),
        ))
    return records


def write_reference(records: list[ReferenceRecord], header: ReferenceHeader, output: Path) -> None:
    lines = [header.model_dump_json()] + [r.model_dump_json() for r in records]
    payload = ("\n".join(lines) + "\n").encode("utf-8")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        gz.write(payload)
    atomic_write_bytes(output, buffer.getvalue())


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def build(source: Path, output: Path, *, from_csv: bool, commit: str | None, models: list[str] | None) -> ReferenceHeader:
    """Build the reference file; returns its header (counts and provenance)."""
    wanted = set(models) if models else None
    if from_csv:
        rows = rows_from_csv(source, wanted)
        commit = commit or RESULTS_COMMIT
        selection = "rows with preferred==1 (SOURCE.md rule), main score only, NaN dropped"
    else:
        rows = rows_from_results(source, wanted)
        commit = commit or _git_commit(source)
        selection = "one result per (model, task, split, subset): real revision > external > no_revision_available, then newest mteb_version; main score only, NaN dropped"
    if not rows:
        raise LeaderboardInputError(source, None, "yields no scores for the requested models",
                                    f"check --models (e.g. {ISSUE_MODELS[0]}) and the input")
    records = to_records(rows)
    header = ReferenceHeader(
        format=REFERENCE_FORMAT, source_repository=RESULTS_REPOSITORY, source_commit=commit,
        built_from=source.name, built_from_sha256=_sha256(source), selection=selection,
        records=len(records), scores=len(rows),
    )
    write_reference(records, header, output)
    return header


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leaderboards.build_reference", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="mteb_reference_scores*.csv[.gz] (../shared/data/reference_scores/)")
    src.add_argument("--results", type=Path, help="a results folder in MTEB layout (e.g. a checkout of embeddings-benchmark/results)")
    parser.add_argument("--commit", help=f"commit of the results repository (CSV default: {RESULTS_COMMIT})")
    parser.add_argument("--models", nargs="*", default=list(ISSUE_MODELS), help="models to keep; default: the issue's 11 models")
    parser.add_argument("--all-models", action="store_true", help="keep every model of the input")
    parser.add_argument("--output", type=Path, default=None, help="default: the packaged leaderboards/reference file")
    args = parser.parse_args(argv)
    output = args.output or packaged_reference_path()
    try:
        header = build(args.csv or args.results, output, from_csv=args.csv is not None, commit=args.commit,
                       models=None if args.all_models else args.models)
    except LeaderboardInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {output}: {header.records} result files, {header.scores} scores from {header.source_repository}@{header.source_commit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
