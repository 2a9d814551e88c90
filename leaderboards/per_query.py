"""Per-query main scores, kept beside a run's results for paired significance tests.

A main score is a mean over queries; two runs on the same queries can be compared query by query,
which separates a real drop from the noise of a few queries flipping.
"""

from __future__ import annotations

from pathlib import Path


from leaderboards.results_reader import read_json
from leaderboards.schemas import PerQueryFile, parse_file
from leaderboards.scores import ModelResults, ScoreKey


def read_per_query(path: Path) -> PerQueryFile:
    return parse_file(
        PerQueryFile, read_json(path), path,
        'write {"task_name", "main_score", "scores": {split: {hf_subset: {query_id: score}}}} or delete it',
        what="a per-query score file",
    )


def per_query_scores(model: ModelResults, key: ScoreKey) -> dict[str, float] | None:
    """The per-query scores behind one main score, or None when the run did not keep them."""
    path = model.per_query_files.get(key.task)
    if path is None:
        return None
    parsed = read_per_query(path)
    return parsed.scores.get(key.split, {}).get(key.subset)
