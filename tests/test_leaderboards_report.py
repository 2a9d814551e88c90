"""`report`: a MiniLM run reproduces the official numbers beside mE5, e5-mistral, OpenAI and Cohere rows."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from leaderboards.commands import report
from leaderboards.errors import LeaderboardInputError
from leaderboards_fixtures import MINILM, MINILM_SCORES, revision_dir, write_run

BASELINE_GROUPS = {
    "mE5": ["intfloat/multilingual-e5-small", "intfloat/multilingual-e5-base", "intfloat/multilingual-e5-large"],
    "e5-mistral": ["intfloat/e5-mistral-7b-instruct"],
    "OpenAI": ["openai/text-embedding-ada-002", "openai/text-embedding-3-small", "openai/text-embedding-3-large"],
    "Cohere": ["Cohere/Cohere-embed-english-v3.0", "Cohere/Cohere-embed-multilingual-v3.0"],
}


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def _md_row(text: str, label: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[1] == label:
            return cells
    raise AssertionError(f"no summary row for {label}")


def test_markdown_row_matches_reference_and_baselines_have_coverage(run_dir: Path) -> None:
    text = report(run_dir, "markdown", None, None, None)
    run_row = _md_row(text, MINILM)
    ref_row = _md_row(text, f"{MINILM} (MTEB reference)")
    # Rank, model, origin differ; coverage and every average must be identical to the official numbers.
    assert run_row[2] == "run" and ref_row[2] == "reference"
    assert run_row[3:] == ref_row[3:]
    assert run_row[3] == "5/5 tasks, 6/6 scores"
    # Classification, Retrieval (SciFact and XQuAD: baselines lacking XQuAD do not shrink it), STS
    assert run_row[4:7] == ["80.04", "73.42", "82.03"]
    for names in BASELINE_GROUPS.values():
        for name in names:
            row = _md_row(text, name)
            assert row[2] == "reference" and "/5 tasks" in row[3]
    ada = _md_row(text, "openai/text-embedding-ada-002")
    assert ada[3] == "3/5 tasks, 3/6 scores"
    assert ada[4:] == ["80.66", "— (1/2)", "83.17", "— (0/1)", "— (3/5)"] and ada[0] == "—"
    assert "openai/text-embedding-ada-002 (0/1, lacks Tatoeba)" in text
    assert "## BEIR per dataset" in text and "### XQuADRetrieval (validation)" in text
    assert "70.32 (#9)" in text  # XQuAD de, MiniLM


def test_json_scores_equal_reference_to_full_precision(run_dir: Path) -> None:
    data = json.loads(report(run_dir, "json", ["mE5", "e5-mistral", "openai", "cohere", "minilm"], None, None))
    ref_label = f"{MINILM} (MTEB reference)"
    rows = {(r["task"], r["split"], r["subset"]): r for r in data["subsets"]}
    for task, split, subset, _l, score in MINILM_SCORES:
        row = rows[(task, split, subset)]
        assert row["scores"][MINILM] == score
        assert row["scores"][ref_label] == score
        assert row["deltas"][ref_label] == 0.0
    labels = [e["label"] for e in data["entries"]]
    assert MINILM in labels and len(labels) == 1 + 3 + 1 + 3 + 2 + 1
    overall = data["overall"]
    assert overall["tasks"] == ["Banking77Classification", "STSBenchmark", "SciFact", "Tatoeba", "XQuADRetrieval"]
    assert overall["coverage"]["openai/text-embedding-ada-002"] == 3
    assert overall["missing"]["openai/text-embedding-ada-002"] == ["Tatoeba", "XQuADRetrieval"]
    assert overall["averages"]["openai/text-embedding-ada-002"] is None


def test_csv_with_reference_gives_deltas_and_ranks(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "report.csv"
    text = report(run_dir, "csv", ["e5-mistral"], "intfloat/e5-mistral-7b-instruct", out)
    assert out.read_text() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    scifact = {r["model"]: r for r in rows if r["level"] == "task" and r["task"] == "SciFact"}
    assert float(scifact[MINILM]["score"]) == 0.64508
    assert float(scifact["intfloat/e5-mistral-7b-instruct"]["score"]) == 0.76417
    assert float(scifact[MINILM]["delta_vs_reference"]) == pytest.approx(0.64508 - 0.76417)
    assert scifact[MINILM]["rank"] == "2" and scifact["intfloat/e5-mistral-7b-instruct"]["rank"] == "1"
    overall = {r["model"]: r for r in rows if r["level"] == "overall"}
    assert overall[MINILM]["tasks_in_average"] == "5"


def test_results_folder_itself_is_accepted(run_dir: Path) -> None:
    assert report(run_dir / "results", "md", ["none"], None, None) == report(run_dir, "md", ["none"], None, None).replace(
        f"`{run_dir}`", f"`{run_dir / 'results'}`").replace("report: run", "report: results")


def test_coverage_is_honest_when_the_run_lacks_a_subset(tmp_path: Path) -> None:
    """Two run models; one lacks XQuAD/de: it gets no Retrieval average, the other keeps its full one."""
    write_run(tmp_path / "run")
    partial = [s for s in MINILM_SCORES if s[2] != "de"]
    write_run(tmp_path / "run", partial, name="me/partial-model", revision="r1")
    data = json.loads(report(tmp_path / "run", "json", ["none"], None, None))
    retrieval = next(c for c in data["categories"] if c["category"] == "Retrieval")
    assert retrieval["tasks"] == ["SciFact", "XQuADRetrieval"]
    assert retrieval["missing"] == {"me/partial-model": ["XQuADRetrieval"]}
    assert retrieval["coverage"] == {"me/partial-model": 1, MINILM: 2}
    assert retrieval["averages"]["me/partial-model"] is None
    assert retrieval["averages"][MINILM] == pytest.approx((0.64508 + (0.94357 + 0.70324) / 2) / 2)


def test_bad_format_unknown_baseline_and_reference_are_input_errors(run_dir: Path) -> None:
    with pytest.raises(LeaderboardInputError, match="--format.*use markdown, html, csv or json"):
        report(run_dir, "pdf", None, None, None)
    with pytest.raises(LeaderboardInputError, match="'acme/embedder-9000' is neither a results directory nor a shipped reference model"):
        report(run_dir, "markdown", ["mE5", "acme/embedder-9000"], None, None)
    with pytest.raises(LeaderboardInputError, match="--reference"):
        report(run_dir, "markdown", None, "nobody/none-such", None)


def test_invalid_json_result_file_is_one_clear_error(run_dir: Path, tmp_path: Path) -> None:
    path = revision_dir(run_dir) / "SciFact.json"
    path.write_text(path.read_text()[:120])  # a write cut short
    out = tmp_path / "never.md"
    with pytest.raises(LeaderboardInputError) as info:
        report(run_dir, "markdown", None, None, out)
    message = str(info.value)
    assert str(path) in message and "line " in message and "not valid JSON" in message and "Fix:" in message
    assert not out.exists()


def test_result_file_missing_scores_names_the_field(run_dir: Path) -> None:
    path = revision_dir(run_dir) / "STSBenchmark.json"
    path.write_text(json.dumps({"task_name": "STSBenchmark", "scores": {"test": [{"hf_subset": "default"}]}}))
    with pytest.raises(LeaderboardInputError, match=r"STSBenchmark\.json: scores\.test\.0\.main_score"):
        report(run_dir, "markdown", None, None, None)


def test_empty_or_missing_run_dir_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty" / "results").mkdir(parents=True)
    with pytest.raises(LeaderboardInputError, match="holds no MTEB result files.*Fix: pass a run directory"):
        report(tmp_path / "empty", "markdown", None, None, None)
    with pytest.raises(LeaderboardInputError, match="does not exist"):
        report(tmp_path / "nope", "markdown", None, None, None)


def test_a_results_directory_can_be_a_baseline(run_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    meta = revision_dir(other) / "model_meta.json"
    meta.write_text(json.dumps({"name": "me/copy", "revision": "c1"}))
    text = report(run_dir, "markdown", [str(other)], "me/copy", None)
    row = _md_row(text, "me/copy")
    assert row[2] == "directory" and row[3] == "5/5 tasks, 6/6 scores"
    assert "Δ against: **me/copy**" in text


def test_legacy_result_files_are_read_through_mteb(tmp_path: Path) -> None:
    """Pre-1.11 files (no ``scores``/``main_score``) are converted by mteb's own TaskResult loader."""
    write_run(tmp_path / "run")
    rev = revision_dir(tmp_path / "run")
    (rev / "SciFact.json").write_text(json.dumps({
        "mteb_version": "1.0.2", "mteb_dataset_name": "SciFact", "dataset_revision": None,
        "test": {"ndcg_at_10": 0.64508, "map_at_10": 0.6, "evaluation_time": 3.1}}))
    data = json.loads(report(tmp_path / "run", "json", ["none"], None, None))
    scifact = next(r for r in data["subsets"] if r["task"] == "SciFact")
    assert scifact["scores"][MINILM] == 0.64508


def test_unknown_task_takes_the_type_its_writer_recorded(tmp_path: Path) -> None:
    """mteb's metadata decides a task's category; for a local task mteb does not know, the type the
    harness stored in the result file (``harness_provenance.task.type``) is the fallback."""
    run = write_run(tmp_path / "run", [("MyLocalRetrieval", "test", "default", ["eng-Latn"], 0.5)])
    path = revision_dir(run) / "MyLocalRetrieval.json"
    obj = json.loads(path.read_text())
    obj["harness_provenance"] = {"task": {"name": "MyLocalRetrieval", "type": "Retrieval"}}
    path.write_text(json.dumps(obj))
    data = json.loads(report(run, "json", ["none"], None, None))
    assert [c["category"] for c in data["categories"]] == ["Retrieval"]
