"""Issue #8 item 6: a gate that cannot fail is refused (exit 2), and a NaN score is reported as NaN."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import cli
from leaderboards.commands import gate
from leaderboards.errors import LeaderboardInputError
from leaderboards_fixtures import MINILM, revision_dir, write_run


def _with_step_keys(run: Path, prefix: str, date: float = 1700000000.0) -> Path:
    for path in revision_dir(run).glob("*.json"):
        if path.name == "model_meta.json":
            continue
        obj = json.loads(path.read_text())
        obj["harness_provenance"] = {"step_key": f"{prefix}-{path.stem}"}
        obj["date"] = date
        path.write_text(json.dumps(obj))
    return run


def test_folder_gated_against_itself_is_refused(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runA")
    result = cli("gate", "--baseline", str(run), "--candidate", str(run))
    assert result.exit_code == 2
    assert "same results folder" in result.output and len(result.output.strip().splitlines()) == 1
    # The run folder and its results/ subfolder are the same inputs too.
    with pytest.raises(LeaderboardInputError, match="same results folder"):
        gate(str(run / "results"), run)


def test_copy_of_the_same_evaluations_is_refused_but_a_new_evaluation_is_gated(tmp_path: Path) -> None:
    run = _with_step_keys(write_run(tmp_path / "runA"), "k")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    with pytest.raises(LeaderboardInputError, match="identical step keys and evaluation times for all 5 task"):
        gate(str(run), copy)
    assert cli("gate", "--baseline", str(run), "--candidate", str(copy)).exit_code == 2
    # A fresh evaluation of unchanged code shares the step keys but not the times: it is gated.
    rerun = _with_step_keys(write_run(tmp_path / "runB"), "k", date=1800000000.0)
    assert gate(str(run), rerun).exit_code == 0
    other = _with_step_keys(write_run(tmp_path / "runC"), "other")
    assert gate(str(run), other).exit_code == 0


def _nan_scifact(run: Path, value: float | None) -> None:
    path = revision_dir(run) / "SciFact.json"
    obj = json.loads(path.read_text())
    obj["scores"]["test"][0]["main_score"] = value
    obj["scores"]["test"][0]["ndcg_at_10"] = value
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize("value", [float("nan"), None])  # None: how strict JSON stores mteb's NaN
def test_nan_score_is_reported_as_nan_and_fails(tmp_path: Path, value: float | None) -> None:
    base = write_run(tmp_path / "base")
    cand = write_run(tmp_path / "cand")
    _nan_scifact(cand, value)
    for baseline in (str(base), MINILM):  # a results directory, and the shipped reference model
        outcome = gate(baseline, cand)
        bad = [(c.task, c.status) for c in outcome.comparisons if c.status != "ok"]
        assert outcome.exit_code == 1 and bad == [("SciFact", "nan")]
        assert "| ❌ NaN | SciFact | test | default | 64.51 | NaN |" in outcome.markdown
