"""The shipped reference data: present without ../shared, traceable, and rebuildable from either source."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from tests.helpers import require

from leaderboards.build_reference import RESULTS_COMMIT, ISSUE_MODELS, build, main, preference
from leaderboards.errors import LeaderboardInputError
from leaderboards.reference import load_reference, load_reference_file, packaged_reference_path, resolve_names
from leaderboards.scores import ScoreKey
from leaderboards_fixtures import MINILM, MINILM_REVISION, MINILM_SCORES, SHARED_DATA, write_run

REFERENCE_DIR = SHARED_DATA / "reference_scores"
needs_shared = pytest.mark.usefixtures("shared_required")


@pytest.fixture
def shared_required() -> None:
    require((REFERENCE_DIR / "mteb_reference_scores.csv").is_file(), "../shared/data/reference_scores (the project's read-only data checkout)")


def test_packaged_reference_has_the_issue_models_with_provenance() -> None:
    data = load_reference()
    assert set(ISSUE_MODELS) <= set(data.models)
    assert data.header.source_commit == RESULTS_COMMIT
    assert data.header.source_repository == "embeddings-benchmark/results"
    minilm = data.models[MINILM]
    for task, split, subset, _langs, score in MINILM_SCORES:
        assert minilm.scores[ScoreKey(task, split, subset)] == pytest.approx(score, abs=1e-12)
    source = minilm.sources["SciFact"]
    assert source.source_path == f"results/sentence-transformers__all-MiniLM-L6-v2/{MINILM_REVISION}/SciFact.json"
    assert minilm.task_types["SciFact"] == "Retrieval"
    # Reference models carry hundreds of tasks; the gate and report restrict them to the run's scope.
    assert len(data.models["intfloat/e5-mistral-7b-instruct"].tasks) > 100


def test_packaged_file_is_small_and_in_documented_format() -> None:
    path = packaged_reference_path()
    assert path.stat().st_size < 2_000_000
    with gzip.open(path, "rt") as fh:
        header = json.loads(fh.readline())
        record = json.loads(fh.readline())
    assert header["format"] == "e5-harness-reference/1"
    assert set(record) >= {"model", "revision", "task", "task_type", "source_path", "mteb_version", "scores"}
    split, subset, score = record["scores"][0]
    assert isinstance(split, str) and isinstance(subset, str) and 0.0 <= score <= 1.0


def test_names_aliases_and_suffixes_resolve() -> None:
    data = load_reference()
    assert resolve_names(["mE5"], data) == [
        "intfloat/multilingual-e5-small", "intfloat/multilingual-e5-base", "intfloat/multilingual-e5-large"]
    assert resolve_names(["e5-mistral,openai"], data)[0] == "intfloat/e5-mistral-7b-instruct"
    assert resolve_names(["multilingual-e5-large"], data) == ["intfloat/multilingual-e5-large"]
    with pytest.raises(LeaderboardInputError, match="did you mean"):
        resolve_names(["intfloat/multilingual-e5-larg"], data)


def test_preference_rule_matches_source_md() -> None:
    assert preference("abc123", "1.12.75") > preference("external", "2.0.0")
    assert preference("external", "1.0.0") > preference("no_revision_available", "2.0.0")
    assert preference("abc", "1.38.3") > preference("abc", "1.18.0")
    assert preference("abc", "1.18.0") > preference("abc", "1.9.0")


def test_rebuild_from_an_mteb_results_folder(tmp_path: Path) -> None:
    write_run(tmp_path / "repo")
    out = tmp_path / "ref.jsonl.gz"
    assert main(["--results", str(tmp_path / "repo"), "--commit", "deadbeef", "--all-models", "--output", str(out)]) == 0
    data = load_reference_file(out)
    assert data.header.source_commit == "deadbeef"
    minilm = data.models[MINILM]
    assert minilm.scores[ScoreKey("XQuADRetrieval", "validation", "de")] == 0.70324
    assert minilm.task_types["Tatoeba"] == "BitextMining"  # from mteb's task metadata
    assert minilm.sources["SciFact"].source_path.endswith(f"{MINILM_REVISION}/SciFact.json")


def test_rebuild_from_a_bad_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeaderboardInputError, match="holds no MTEB result files"):
        build(tmp_path / "empty", tmp_path / "x.jsonl.gz", from_csv=False, commit=None, models=None)


@needs_shared
def test_packaged_file_is_exactly_a_rebuild_of_the_shared_csv(tmp_path: Path) -> None:
    out = tmp_path / "rebuilt.jsonl.gz"
    build(REFERENCE_DIR / "mteb_reference_scores_all_tasks.csv.gz", out, from_csv=True, commit=None, models=list(ISSUE_MODELS))
    # Compare content, not gzip bytes: another zlib build may compress the same text differently.
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(packaged_reference_path().read_bytes())


@needs_shared
def test_packaged_scores_equal_the_shared_csv_for_local_tasks() -> None:
    data = load_reference()
    with open(REFERENCE_DIR / "mteb_reference_scores.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["preferred"] == "1" and r["score"] not in ("", "nan")]
    assert len(rows) > 1000
    for r in rows:
        got = data.models[r["model"]].scores[ScoreKey(r["task"], r["split"], r["subset"])]
        assert got == pytest.approx(float(r["score"]), abs=1e-12), r
