"""`gate`: exit 0 on parity, 1 on a real regression, LeaderboardInputError (exit 2) on bad input,
and a drop within query-level noise reported as "not significant" instead of failing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from leaderboards.commands import gate, parse_per_task
from leaderboards.errors import LeaderboardInputError
from leaderboards.significance import paired_test
from leaderboards_fixtures import (
    MINILM, MINILM_SCORES, revision_dir, scifact_per_query, write_per_query, write_run, write_task_result,
)


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "run")


def _set_score(run: Path, task: str, split: str, subset: str, value: float) -> None:
    rows = [(t, sp, su, langs, value if (t, sp, su) == (task, split, subset) else s)
            for t, sp, su, langs, s in MINILM_SCORES if t == task]
    entries: dict = {}
    for _t, sp, su, langs, s in rows:
        entries.setdefault(sp, []).append((su, langs, s))
    write_task_result(revision_dir(run), task, entries)


def test_parity_with_own_official_reference_passes(run_dir: Path) -> None:
    outcome = gate(MINILM, run_dir, 0.01, {}, [])
    assert outcome.exit_code == 0 and outcome.passed
    assert {c.status for c in outcome.comparisons} == {"ok"} and len(outcome.comparisons) == 6
    assert outcome.markdown.startswith("### ✅ Embedding regression gate passed")
    assert "f4cc6c8b365a3c779dbc708d6affe0b0355b2ddf" in outcome.markdown


def test_against_e5_mistral_fails(run_dir: Path) -> None:
    outcome = gate("intfloat/e5-mistral-7b-instruct", run_dir, 0.01, {}, [])
    assert outcome.exit_code == 1
    regressed = {c.task for c in outcome.comparisons if c.status == "regressed"}
    assert {"SciFact", "STSBenchmark", "XQuADRetrieval", "Tatoeba"} <= regressed
    assert "| ❌ regressed | SciFact | test | default | 76.42 | 64.51 | -11.91 | 1.00 |" in outcome.markdown


def test_unknown_or_ambiguous_baseline_name_is_an_input_error(run_dir: Path) -> None:
    with pytest.raises(LeaderboardInputError, match="'intfloat/e5-mistral-8b' is neither a results directory"):
        gate("intfloat/e5-mistral-8b", run_dir, 0.01, {}, [])
    with pytest.raises(LeaderboardInputError, match="names 3 models"):
        gate("mE5", run_dir, 0.01, {}, [])


def test_candidate_only_subset_of_reference_and_required_tasks(run_dir: Path) -> None:
    # The reference has ~8000 MiniLM scores; only the 6 the candidate has are compared.
    outcome = gate(MINILM, run_dir, 0.01, {}, [], require_tasks=["SciFact", "NFCorpus"])
    missing = [c for c in outcome.comparisons if c.status == "missing"]
    assert outcome.exit_code == 1 and [c.task for c in missing] == ["NFCorpus"]
    assert gate(MINILM, run_dir, 0.01, {}, ["NFCorpus"], require_tasks=["NFCorpus"]).exit_code == 0


def test_two_directories_identical_copy_passes_and_real_regression_fails(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert gate(str(run_dir), copy, 0.01, {}, []).exit_code == 0
    _set_score(copy, "SciFact", "test", "default", 0.60)
    outcome = gate(str(run_dir), copy, 0.01, {}, [])
    assert outcome.exit_code == 1
    assert [(c.task, c.status) for c in outcome.comparisons if c.status != "ok"] == [("SciFact", "regressed")]
    # A per-task override can allow it; the most specific pattern wins.
    assert gate(str(run_dir), copy, 0.01, parse_per_task(["SciFact=0.05"]), []).exit_code == 0
    assert gate(str(run_dir), copy, 0.01, parse_per_task(["Sci*=0.05,SciFact/default=0.01"]), []).exit_code == 1


def test_missing_task_or_subset_in_candidate_directory_is_a_regression_unless_allowed(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (revision_dir(copy) / "Banking77Classification.json").unlink()
    write_task_result(revision_dir(copy), "XQuADRetrieval", {"validation": [("en", ["eng-Latn"], 0.94357)]})
    outcome = gate(str(run_dir), copy, 0.01, {}, [])
    assert outcome.exit_code == 1
    assert sorted((c.task, c.subset) for c in outcome.comparisons if c.status == "missing") == [
        ("Banking77Classification", "default"), ("XQuADRetrieval", "de")]
    assert gate(str(run_dir), copy, 0.01, {}, ["Banking77Classification", "XQuADRetrieval/de"]).exit_code == 0


def _write_pair(tmp_path: Path, base_q: dict[str, float], cand_q: dict[str, float]) -> tuple[Path, Path]:
    base_dir, cand_dir = write_run(tmp_path / "base"), write_run(tmp_path / "cand")
    for run, scores in ((base_dir, base_q), (cand_dir, cand_q)):
        write_task_result(revision_dir(run), "SciFact", {"test": [("default", ["eng-Latn"], float(np.mean(list(scores.values()))))]})
        write_per_query(run, "SciFact", "test", "default", scores)
    return base_dir, cand_dir


def _noisy_pair(tmp_path: Path) -> tuple[Path, Path]:
    """What a harmless change looks like: 6 of 300 queries lose a relevant hit (-0.6 each, mean -0.012,
    beyond a 0.01 tolerance) while 40 others move up or down by 0.3 in matched pairs."""
    base_q = scifact_per_query(seed=0)
    cand_q = dict(base_q)
    high = [q for q, v in base_q.items() if v > 0.8][:6]
    middle = [q for q, v in base_q.items() if 0.3 < v < 0.7][:40]
    for q in high:
        cand_q[q] = base_q[q] - 0.6
    for i, q in enumerate(middle):
        cand_q[q] = base_q[q] + (0.3 if i % 2 == 0 else -0.3)
    return _write_pair(tmp_path, base_q, cand_q)


def test_drop_within_noise_is_reported_not_significant(tmp_path: Path) -> None:
    base_dir, cand_dir = _noisy_pair(tmp_path)
    outcome = gate(str(base_dir), cand_dir, 0.01, {}, [])
    (scifact,) = [c for c in outcome.comparisons if c.task == "SciFact"]
    assert scifact.delta == pytest.approx(-0.012) and scifact.delta < -0.01  # beyond the tolerance ...
    assert scifact.status == "not_significant" and scifact.paired_test.p_value > 0.05  # ... but within noise
    assert scifact.paired_test.n_queries == 300
    assert outcome.exit_code == 0
    assert "not significant" in outcome.markdown and "p=" in outcome.markdown


def test_consistent_per_query_drop_is_a_significant_regression(tmp_path: Path) -> None:
    base_q = scifact_per_query(seed=0)
    rng = np.random.default_rng(1)
    cand_q = {q: max(0.0, v - 0.03 + rng.normal(0, 0.005)) for q, v in base_q.items()}
    base_dir, cand_dir = _write_pair(tmp_path, base_q, cand_q)
    outcome = gate(str(base_dir), cand_dir, 0.01, {}, [])
    (scifact,) = [c for c in outcome.comparisons if c.task == "SciFact"]
    assert scifact.status == "regressed" and scifact.paired_test.p_value < 0.001
    assert outcome.exit_code == 1


def test_paired_test_is_seeded_and_sane() -> None:
    base = scifact_per_query(seed=3)
    same = paired_test(base, dict(base))
    assert same.p_value == 1.0 and same.mean_delta == 0.0
    worse = {q: v - 0.05 for q, v in base.items()}
    a, b = paired_test(base, worse, seed=7), paired_test(base, worse, seed=7)
    assert a == b and a.mean_delta == pytest.approx(-0.05) and a.ci_high < 0
    assert paired_test({"q1": 0.5}, {"q1": 0.4}) is None


def test_bad_gate_input_is_one_clear_error(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(LeaderboardInputError, match="max_drop.*0-1 scale"):
        gate(MINILM, run_dir, 1.0, {}, [])
    with pytest.raises(LeaderboardInputError, match="--per-task.*TASK=MAX_DROP"):
        parse_per_task(["SciFact:0.02"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(LeaderboardInputError, match="holds no MTEB result files"):
        gate(MINILM, tmp_path / "empty", 0.01, {}, [])
    bad = revision_dir(run_dir) / "Tatoeba.json"
    bad.write_text("{not json")
    with pytest.raises(LeaderboardInputError, match=r"Tatoeba\.json: line 1, column 2: is not valid JSON"):
        gate(MINILM, run_dir, 0.01, {}, [])


def test_gate_writes_markdown_for_a_pr_comment(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "gate.md"
    outcome = gate("intfloat/multilingual-e5-large", run_dir, 0.01, {}, [], output=out)
    assert out.read_text() == outcome.markdown
    assert "<details>" in outcome.markdown and "#### Needs attention" in outcome.markdown
    json.loads(outcome.model_dump_json())  # the outcome is serialisable for CI tooling
